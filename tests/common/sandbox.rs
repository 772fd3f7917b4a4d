//! Running `oci-push` in a clean environment: its own HOME, XDG_RUNTIME_DIR and a `bin/`
//! directory first on PATH (for credential helpers), nothing else from the machine's
//! environment, so the machine's own credentials, proxies and CAs never leak into a test.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::Run;

/// The longest an `oci-push` run may take in these tests.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// A temp dir standing in for the user's machine: `home/`, `runtime/` (XDG_RUNTIME_DIR) and
/// `bin/` (first on PATH).
pub struct Sandbox {
    pub dir: TempDir,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = TempDir::new().expect("temp dir");
        for sub in ["home", "runtime", "bin", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("sandbox dir");
        }
        Sandbox { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.path("runtime")
    }

    pub fn bin(&self) -> PathBuf {
        self.path("bin")
    }

    /// Writes `content` at `relative` (parents created), returning the path.
    pub fn write(&self, relative: &str, content: &[u8]) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        path
    }

    pub fn write_json(&self, relative: &str, value: &serde_json::Value) -> PathBuf {
        self.write(relative, &serde_json::to_vec_pretty(value).expect("json"))
    }

    /// `~/.docker/config.json` (used when DOCKER_CONFIG is not set).
    pub fn home_docker_config(&self, value: &serde_json::Value) -> PathBuf {
        self.write_json("home/.docker/config.json", value)
    }

    /// `DIR/config.json` for `DOCKER_CONFIG=DIR`; returns (DIR, the file).
    pub fn docker_config_dir(&self, value: &serde_json::Value) -> (PathBuf, PathBuf) {
        let file = self.write_json("docker-config/config.json", value);
        (self.path("docker-config"), file)
    }

    /// `$XDG_RUNTIME_DIR/containers/auth.json`.
    pub fn runtime_auth_json(&self, value: &serde_json::Value) -> PathBuf {
        self.write_json("runtime/containers/auth.json", value)
    }

    /// An executable script in `bin/`.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.write(&format!("bin/{name}"), body.as_bytes());
        make_executable(&path);
        path
    }

    /// `bin/docker-credential-NAME`, a docker credential helper: `get` reads the server on
    /// stdin and prints `{"ServerURL","Username","Secret"}` for the matching entry of
    /// `entries` (server, username, secret), or "credentials not found in native keychain" and
    /// exit 1. Every call is appended to the returned log file as `ARGS<TAB>STDIN`.
    pub fn docker_credential_helper(&self, name: &str, entries: &[(&str, &str, &str)]) -> PathBuf {
        let log = self.path(&format!("docker-credential-{name}.log"));
        let mut cases = String::new();
        for (server, username, secret) in entries {
            let answer = serde_json::json!({
                "ServerURL": server,
                "Username": username,
                "Secret": secret,
            })
            .to_string();
            cases.push_str(&format!(
                "  {}) printf '%s\\n' {} ;;\n",
                shell_quote(server),
                shell_quote(&answer)
            ));
        }
        let body = format!(
            "#!/bin/sh\n\
             server=$(cat)\n\
             printf '%s\\t%s\\n' \"$*\" \"$server\" >> {log}\n\
             if [ \"$1\" != get ]; then echo \"unsupported action: $1\" >&2; exit 1; fi\n\
             case \"$server\" in\n\
             {cases}\
             \x20 *) echo 'credentials not found in native keychain'; exit 1 ;;\n\
             esac\n",
            log = shell_quote(&log.display().to_string()),
        );
        self.script(&format!("docker-credential-{name}"), &body);
        log
    }

    /// A Bazel credential helper at `bin/NAME`: `get` reads `{"uri": ...}` on stdin and prints
    /// `{"headers": HEADERS}`. Returns (its path, the log of `ARGS<TAB>STDIN` lines).
    pub fn bazel_credential_helper(
        &self,
        name: &str,
        headers: &serde_json::Value,
    ) -> (PathBuf, PathBuf) {
        self.bazel_credential_helper_for(name, headers, None)
    }

    /// [`Sandbox::bazel_credential_helper`] that answers only for URIs starting with
    /// `only_uri` when given (an empty `{}` for any other, as a helper without credentials
    /// for it does).
    pub fn bazel_credential_helper_for(
        &self,
        name: &str,
        headers: &serde_json::Value,
        only_uri: Option<&str>,
    ) -> (PathBuf, PathBuf) {
        let log = self.path(&format!("{name}.log"));
        let answer = shell_quote(&serde_json::json!({ "headers": headers }).to_string());
        let respond = match only_uri {
            None => format!("printf '%s\\n' {answer}\n"),
            Some(uri) => format!(
                "case \"$input\" in\n\
                 \x20 *'\"uri\":\"{uri}'*) printf '%s\\n' {answer} ;;\n\
                 \x20 *) echo '{{}}' ;;\n\
                 esac\n"
            ),
        };
        let body = format!(
            "#!/bin/sh\n\
             input=$(cat)\n\
             printf '%s\\t%s\\n' \"$*\" \"$input\" >> {log}\n\
             if [ \"$1\" != get ]; then echo \"unsupported command: $1\" >&2; exit 1; fi\n\
             {respond}",
            log = shell_quote(&log.display().to_string()),
        );
        (self.script(name, &body), log)
    }

    /// Runs `oci-push ARGS` with a clean environment: only PATH (with `bin/` first), HOME,
    /// XDG_RUNTIME_DIR, XDG_CONFIG_HOME and TMPDIR of the sandbox, then `env` on top (a later
    /// entry wins; an empty value sets the variable to the empty string). `stdin` is written
    /// to its standard input (closed otherwise). Fails the test after [`RUN_TIMEOUT`].
    pub fn run(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
        self.run_from(None, args, env, stdin)
    }

    /// [`Sandbox::run`] in `cwd` (else the test's own working directory).
    pub fn run_from(
        &self,
        cwd: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> Run {
        let mut command = self.command(args, env);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        run_with_timeout(command, stdin, RUN_TIMEOUT)
    }
}

impl Sandbox {
    /// `oci-push ARGS` in the sandbox's clean environment (see [`Sandbox::run`]), not started.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_oci-push"));
        command
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.home())
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("TMPDIR", self.path("tmp"));
        for keep in ["LLVM_PROFILE_FILE", "RUST_BACKTRACE"] {
            if let Ok(value) = std::env::var(keep) {
                command.env(keep, value);
            }
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    /// A credential helper `bin/docker-credential-NAME` that writes its PID to the returned
    /// file and then hangs for a minute, named by the Docker config's `credsStore`.
    pub fn hanging_docker_helper(&self, name: &str) -> PathBuf {
        let pid_file = self.path(&format!("{name}.pid"));
        self.script(
            &format!("docker-credential-{name}"),
            &format!(
                "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
                pid_file.display()
            ),
        );
        self.home_docker_config(&serde_json::json!({ "credsStore": name }));
        pid_file
    }
}

/// `oci-push ARGS` in a fresh [`Sandbox`] (see [`Sandbox::run`]).
pub fn oci_push_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Run {
    Sandbox::new().run(args, env, stdin)
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path).expect("metadata").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

/// `'text'` for sh (the tests' values never hold a single quote).
/// The `{"uri": ...}` questions a Bazel credential helper's log shows, in order.
pub fn helper_uris(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|line| {
            let (args, input) = line.split_once('\t').expect("ARGS<TAB>STDIN");
            assert_eq!(args, "get", "{line}");
            let input: serde_json::Value = serde_json::from_str(input).expect("the helper's input");
            input["uri"].as_str().expect("a uri").to_string()
        })
        .collect()
}

pub fn shell_quote(text: &str) -> String {
    assert!(!text.contains('\''), "cannot quote {text:?}");
    format!("'{text}'")
}

/// Runs a command to completion with its output captured, killing it after `timeout`.
pub fn run_with_timeout(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Run {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run oci-push");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let input = input.to_string();
        // A writer thread: the program may exit without reading.
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let Some(status) = status else {
        panic!("oci-push did not finish within {timeout:?}; stdout:\n{stdout}\nstderr:\n{stderr}");
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}
