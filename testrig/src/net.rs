//! Veth pairs and network namespaces, made with iproute2's `ip` (the tests that use them need
//! root and [`crate::IP`]), named uniquely per process and removed when dropped, also when the
//! test panics.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Runs `program args`, panicking with its stderr when it cannot start or fails.
pub fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ip args`, panicking with its stderr when it fails.
pub fn ip(args: &[&str]) {
    run("ip", args);
}

/// `ip args` whose failure does not matter (deleting what may not exist).
fn ip_ignoring_failure(args: &[&str]) {
    let _ = Command::new("ip").args(args).output();
}

/// `prefix`, this process's id (last 5 digits) and a counter of this process: a name no other
/// test process uses at the same time. With a prefix of 4 characters and a suffix of one, it
/// fits an interface name (15 characters).
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// `02:66:73:00:00:01`, as `ip link set ... address` takes it.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Serializes `ip netns add` and `del` within the process: the first `ip netns add` on a machine
/// mounts /run/netns, and two at once can stack two mounts and hide one namespace's file from its
/// `ip netns del`.
static NETNS_ADMIN: Mutex<()> = Mutex::new(());

/// A network namespace, deleted when dropped (with the interfaces in it).
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add name`, after deleting a leftover of a crashed earlier run with that name.
    pub fn new(name: &str) -> Netns {
        ip_ignoring_failure(&["netns", "del", name]);
        let _serial = NETNS_ADMIN.lock().unwrap_or_else(|e| e.into_inner());
        ip(&["netns", "add", name]);
        Netns {
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NS program args`, to be spawned.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, program])
            .args(args);
        command
    }

    /// `ip netns exec NS program args`, panicking with its stderr when it fails.
    pub fn run(&self, program: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// `ip netns exec NS program args` with `input` on stdin, killed after `limit`.
    pub fn exec(&self, program: &str, args: &[&str], input: &[u8], limit: Duration) -> Output {
        let mut child = self
            .command(program, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} in {}: {e}", self.name));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        let writer = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let deadline = Instant::now() + limit;
        while child.try_wait().expect("wait for the child").is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let output = child
            .wait_with_output()
            .expect("collect the child's output");
        let _ = writer.join();
        output
    }

    /// Runs `work` on a new thread inside the namespace (`setns` moves only that thread: its
    /// sockets are the namespace's).
    pub fn thread<T, F>(&self, work: F) -> thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/var/run/netns/{}", self.name);
        thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: `ns` is an open namespace file; setns(CLONE_NEWNET) moves only the calling
            // thread, which from here on creates its sockets in the namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            work()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _serial = NETNS_ADMIN.lock().unwrap_or_else(|e| e.into_inner());
        ip_ignoring_failure(&["netns", "del", &self.name]);
    }
}

/// A veth pair, `a` in this namespace, deleted when dropped (deleting one end deletes both).
/// Both ends start down, with the kernel's defaults.
pub struct Veth {
    pub a: String,
    pub b: String,
}

impl Veth {
    /// `ip link add a type veth peer name b`, after deleting a leftover `a`.
    pub fn new(a: String, b: String) -> Veth {
        Veth::add(a, b, None)
    }

    /// The same with the `b` end in the namespace `ns` (dropping `ns` first deletes the pair).
    pub fn with_peer_in(a: String, b: String, ns: &Netns) -> Veth {
        Veth::add(a, b, Some(ns))
    }

    fn add(a: String, b: String, ns: Option<&Netns>) -> Veth {
        ip_ignoring_failure(&["link", "del", &a]);
        let mut args = vec!["link", "add", &a, "type", "veth", "peer", "name", &b];
        if let Some(ns) = ns {
            args.extend_from_slice(&["netns", ns.name()]);
        }
        ip(&args);
        Veth { a, b }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        ip_ignoring_failure(&["link", "del", &self.a]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_pair_with_one_end_in_a_namespace_goes_with_the_namespace() {
        if crate::skip_without_root_and(&[crate::IP]) {
            return;
        }
        let id = unique_name("fstr");
        let ns = Netns::new(&id);
        let veth = Veth::with_peer_in(format!("{id}a"), format!("{id}b"), &ns);
        let here = format!("/sys/class/net/{}", veth.a);
        assert!(Path::new(&here).exists(), "{here}");
        ns.run("ip", &["link", "set", "dev", &veth.b, "up"]);
        // The other end is in the namespace, for its processes and for its threads.
        let out = ns.exec("cat", &[], b"through the namespace", Duration::from_secs(5));
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"through the namespace");
        // (sysfs shows the namespace it was mounted in; the index comes from the thread's.)
        let index = |name: &str| {
            let name = std::ffi::CString::new(name).expect("no NUL in the name");
            // SAFETY: if_nametoindex reads the NUL-terminated name and nothing else.
            unsafe { libc::if_nametoindex(name.as_ptr()) }
        };
        let b = veth.b.clone();
        let inside = ns
            .thread(move || index(&b))
            .join()
            .expect("the namespace's thread");
        assert_ne!(inside, 0, "{} inside {id}", veth.b);
        assert_eq!(index(&veth.b), 0, "{} not here", veth.b);
        drop(ns);
        // The kernel tears a deleted namespace down in the background.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&here).exists() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !Path::new(&here).exists(),
            "the pair went with the namespace"
        );
        assert!(!Path::new(&format!("/var/run/netns/{id}")).exists());
        drop(veth);
    }

    #[test]
    fn a_pair_in_this_namespace_is_deleted_on_drop() {
        if crate::skip_without_root_and(&[crate::IP]) {
            return;
        }
        let id = unique_name("fstr");
        let veth = Veth::new(format!("{id}a"), format!("{id}b"));
        ip(&[
            "link",
            "set",
            "dev",
            &veth.a,
            "address",
            &mac_text([2, 0x66, 0x73, 0, 0, 0x0a]),
        ]);
        let address = std::fs::read_to_string(format!("/sys/class/net/{}/address", veth.a))
            .expect("the end's address");
        assert_eq!(address.trim(), "02:66:73:00:00:0a");
        let ends = [veth.a.clone(), veth.b.clone()];
        drop(veth);
        for end in ends {
            assert!(
                !Path::new(&format!("/sys/class/net/{end}")).exists(),
                "{end}"
            );
        }
    }
}
