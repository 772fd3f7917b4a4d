//! The command line itself: help, version.

mod common;

use common::oci_push;

#[test]
fn version_names_the_release_and_the_commit() {
    let run = oci_push(["--version"]).ok();
    let line = run.stdout.trim_end();
    let prefix = format!("oci-push {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(line.starts_with(&prefix) && line.ends_with(')'), "{line}");
    let commit = &line[prefix.len()..line.len() - 1];
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{commit}"
    );
    assert_eq!(oci_push(["-V"]).ok().stdout, run.stdout);
}

#[test]
fn help_lists_every_exit_code() {
    let run = oci_push(["--help"]).ok();
    for code in 0..=8 {
        assert!(
            run.stdout.contains(&format!("\n    {code}  ")),
            "exit code {code} missing:\n{}",
            run.stdout
        );
    }
    assert_eq!(oci_push(["-h"]).ok().stdout, run.stdout);
}

/// Every `--flag` that `--help` shows, in order of first appearance.
fn flags_in_help() -> Vec<String> {
    let help = oci_push(["--help"]).ok().stdout;
    let mut flags: Vec<String> = Vec::new();
    for word in help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        if word.len() > 2 && word.starts_with("--") && !flags.iter().any(|f| f == word) {
            flags.push(word.to_string());
        }
    }
    flags
}

#[test]
fn the_cli_reference_documents_every_flag_and_exit_code() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap();
    let flags = flags_in_help();
    assert!(flags.len() > 20, "{flags:?}");
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| !docs.contains(&format!("`{f}")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/cli.md does not document {missing:?}"
    );
    for code in 0..=8 {
        assert!(
            docs.contains(&format!("\n| {code} | ")),
            "docs/cli.md misses exit code {code}"
        );
    }
}
