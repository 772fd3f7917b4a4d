//! Embeds the git commit the pusher was built from, for `oci-push --version`. A release build
//! may set OCI_PUSH_GIT_COMMIT instead (e.g. from a source archive without .git).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=OCI_PUSH_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("OCI_PUSH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            let text = String::from_utf8(out.stdout).ok()?;
            (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=OCI_PUSH_GIT_COMMIT={commit}");
}
