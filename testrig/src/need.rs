//! Root and programs: tell "not available here" from "failed".
//!
//! A test that cannot run here (not root, a program not in `PATH`) calls one of the `skip_*`
//! functions first and returns when it answers true. Outside CI they print one line on the
//! standard error stream, `skipped: needs nc (apt-get install netcat-openbsd)`, and the test
//! passes; under `CI=true`, where everything must run, they panic with the same message.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A program a test runs, and the Debian package that installs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const IP: Tool = Tool {
    program: "ip",
    package: "iproute2",
};
pub const SS: Tool = Tool {
    program: "ss",
    package: "iproute2",
};
pub const ETHTOOL: Tool = Tool {
    program: "ethtool",
    package: "ethtool",
};
pub const CURL: Tool = Tool {
    program: "curl",
    package: "curl",
};
/// The tests use `-N` (half-close after stdin), which is OpenBSD netcat's.
pub const NC: Tool = Tool {
    program: "nc",
    package: "netcat-openbsd",
};
pub const PYTHON3: Tool = Tool {
    program: "python3",
    package: "python3",
};
pub const IPERF3: Tool = Tool {
    program: "iperf3",
    package: "iperf3",
};
pub const AB: Tool = Tool {
    program: "ab",
    package: "apache2-utils",
};

impl Tool {
    /// Where `PATH` finds the program, if anywhere: looked up, not run.
    pub fn path(&self) -> Option<PathBuf> {
        find_in_path(self.program)
    }
}

/// The first executable file named `program` in the directories of `PATH`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    find_in(&std::env::var_os("PATH")?, program)
}

/// The first executable file named `program` in the directories of `path` (as `PATH` has them).
fn find_in(path: &OsStr, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// Where a program not in `PATH` may still be: a normal user's `PATH` on Debian lacks the sbin
/// directories, where `ip` and `ethtool` are.
const SBIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The program in an sbin directory, when `PATH` does not have it.
fn in_sbin(program: &str) -> Option<PathBuf> {
    SBIN_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True under `CI=true`, where a test that cannot run fails instead of being skipped.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// What this machine lacks of root (when `root`) and `tools`, as the skip line says it:
/// `needs root, nc, curl (apt-get install netcat-openbsd curl)`, or for a program installed in
/// an sbin directory that `PATH` lacks, `needs ethtool (not in PATH: /usr/sbin/ethtool)`;
/// `None` when nothing.
pub fn lacking(root: bool, tools: &[Tool]) -> Option<String> {
    lacking_in(
        &std::env::var_os("PATH").unwrap_or_default(),
        root && !is_root(),
        tools,
    )
}

/// [`lacking`] with `path` for `PATH`, and root lacking or not.
fn lacking_in(path: &OsStr, no_root: bool, tools: &[Tool]) -> Option<String> {
    let mut what: Vec<&str> = Vec::new();
    if no_root {
        what.push("root");
    }
    let mut packages: Vec<&str> = Vec::new();
    let mut off_path: Vec<String> = Vec::new();
    for tool in tools {
        if find_in(path, tool.program).is_some() || what.contains(&tool.program) {
            continue;
        }
        what.push(tool.program);
        if let Some(found) = in_sbin(tool.program) {
            off_path.push(found.display().to_string());
        } else if !packages.contains(&tool.package) {
            packages.push(tool.package);
        }
    }
    if what.is_empty() {
        return None;
    }
    let mut how = Vec::new();
    if !packages.is_empty() {
        how.push(format!("apt-get install {}", packages.join(" ")));
    }
    if !off_path.is_empty() {
        how.push(format!("not in PATH: {}", off_path.join(" ")));
    }
    let mut text = format!("needs {}", what.join(", "));
    if !how.is_empty() {
        text.push_str(&format!(" ({})", how.join("; ")));
    }
    Some(text)
}

/// The test cannot run here, for `why` (`needs ...`): under `CI=true` a panic with that
/// message; otherwise one line `skipped: WHY [test name]` on the standard error stream, and the
/// caller returns.
pub fn skip(why: &str) {
    if under_ci() {
        panic!("{why} (CI=true: a test that cannot run here fails)");
    }
    // The harness names each test's thread after the test.
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(|name| format!(" [{name}]"))
        .unwrap_or_default();
    // Straight to the stream, not `eprintln!`: the harness keeps what a passing test prints
    // with the macros to itself, and this line is for whoever runs the tests. One write, so
    // that the lines of tests running at once do not interleave.
    let line = format!("skipped: {why}{test}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn skip_if_lacking(root: bool, tools: &[Tool]) -> bool {
    match lacking(root, tools) {
        Some(why) => {
            skip(&why);
            true
        }
        None => false,
    }
}

/// True when the test must not run: not root (under `CI=true`, a panic instead).
#[must_use]
pub fn skip_without_root() -> bool {
    skip_if_lacking(true, &[])
}

/// True when the test must not run: not root, or one of `tools` not in `PATH` (under `CI=true`,
/// a panic instead). The line names everything missing.
#[must_use]
pub fn skip_without_root_and(tools: &[Tool]) -> bool {
    skip_if_lacking(true, tools)
}

/// True when the test must not run: one of `tools` not in `PATH` (under `CI=true`, a panic
/// instead).
#[must_use]
pub fn skip_without(tools: &[Tool]) -> bool {
    skip_if_lacking(false, tools)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOWHERE: Tool = Tool {
        program: "flowsteer-no-such-program",
        package: "flowsteer-no-such-package",
    };

    #[test]
    fn a_program_is_found_in_path_and_a_missing_one_is_not() {
        // `sh` is in every PATH a test runs with.
        let sh = find_in_path("sh").expect("sh in PATH");
        assert!(sh.is_file() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(NOWHERE.path(), None);
    }

    #[test]
    fn what_is_lacking_names_the_programs_and_their_packages_once() {
        let other = Tool {
            program: "flowsteer-no-such-other",
            ..NOWHERE
        };
        let sh = Tool {
            program: "sh",
            package: "dash",
        };
        assert_eq!(lacking(false, &[sh]), None);
        assert_eq!(
            lacking(false, &[NOWHERE, sh, other, NOWHERE]).as_deref(),
            Some(
                "needs flowsteer-no-such-program, flowsteer-no-such-other \
                 (apt-get install flowsteer-no-such-package)"
            )
        );
        let with_root = lacking(true, &[NOWHERE]).expect("a missing program");
        assert_eq!(
            with_root.starts_with("needs root, "),
            !is_root(),
            "{with_root}"
        );
        assert_eq!(lacking(true, &[]).is_some(), !is_root());
    }

    #[test]
    fn a_program_in_an_sbin_directory_outside_path_is_named_not_installed() {
        let nowhere = OsStr::new("/nonexistent/flowsteer");
        // ldconfig (libc-bin, essential) is in an sbin directory on every Debian machine.
        let ldconfig = in_sbin("ldconfig").expect("ldconfig in an sbin directory");
        let tool = Tool {
            program: "ldconfig",
            package: "libc-bin",
        };
        assert_eq!(
            lacking_in(nowhere, true, &[tool, NOWHERE]).as_deref(),
            Some(
                format!(
                    "needs root, ldconfig, flowsteer-no-such-program (apt-get install \
                     flowsteer-no-such-package; not in PATH: {})",
                    ldconfig.display()
                )
                .as_str()
            )
        );
        let sbin = ldconfig.parent().expect("a directory").as_os_str();
        assert_eq!(lacking_in(sbin, false, &[tool]), None);
    }
}
