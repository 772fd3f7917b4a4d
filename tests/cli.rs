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
    for code in 0..=6 {
        assert!(
            run.stdout.contains(&format!("\n    {code}  ")),
            "exit code {code} missing:\n{}",
            run.stdout
        );
    }
    assert_eq!(oci_push(["-h"]).ok().stdout, run.stdout);
}
