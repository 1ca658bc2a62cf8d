//! The real programs the tests start: found on `PATH` or the test fails naming the program and
//! its Debian package; started in a process group of their own and killed with it on drop.

use std::path::PathBuf;
use std::process::Stdio;

/// The path of `program` on `PATH`; fails the test naming `package` when it is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed (Debian package `{package}`): scripts/test.sh installs it"
            )
        })
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A started program and everything it starts (its process group), killed on drop.
pub struct Group {
    child: tokio::process::Child,
    name: String,
}

impl Group {
    /// Starts `program` with `args` in a new process group, its output sent to `log`.
    pub fn spawn(program: &PathBuf, args: &[String], log: &std::path::Path) -> Group {
        let out = std::fs::File::create(log)
            .unwrap_or_else(|error| panic!("cannot create the log {log:?}: {error}"));
        let err = out.try_clone().expect("a second handle on the log");
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {program:?}: {error}"));
        Group {
            child,
            name: program.display().to_string(),
        }
    }

    /// Whether the program has exited (a program that died cannot answer).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The program's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The group's id is the leader's pid: this ends the program and its children only.
        if let Some(id) = self.child.id()
            && let Some(pid) = rustix::process::Pid::from_raw(id as i32)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}
