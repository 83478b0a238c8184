//! What the benchmarks share: a measured run of a command (wall time, CPU time and peak RSS
//! of that process alone, from `wait4`) and the sandbox as a child process.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_apisnap");

#[allow(dead_code)] // each benchmark reads the fields it reports
pub struct Measured {
    pub wall: f64,
    pub cpu: f64,
    pub rss_mb: f64,
    pub stdout: String,
    pub stderr: String,
    pub output_bytes: u64,
    /// Of several runs: the fastest and slowest wall times.
    pub range: Option<(f64, f64)>,
}

impl Measured {
    /// The JSON bytes fetched, as a floor run reports them.
    #[allow(dead_code)] // not every benchmark runs floors
    pub fn json_bytes(&self) -> u64 {
        self.stdout
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| w[1].starts_with("bytes"))
            .and_then(|w| w[0].replace(',', "").parse().ok())
            .unwrap_or_else(|| panic!("no byte count in: {}", self.stdout))
    }
}

/// Runs `command` to completion: its wall time, and its own CPU time and peak RSS.
#[allow(clippy::zombie_processes)] // reaped by wait4
pub fn measure(command: &mut Command) -> Measured {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apisnap starts");
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    let _ = child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout);
    // wait4 rather than Child::wait: it reports the resources of this child alone.
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value, and both pointers outlive the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let errors = errors.join().unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed:\n{errors}"
    );
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measured {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        rss_mb: usage.ru_maxrss as f64 / 1024.0,
        stdout,
        stderr: errors,
        output_bytes: 0,
        range: None,
    }
}

#[allow(dead_code)] // not every benchmark measures its output
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `apisnap sandbox --prerender` as a child process, stopped when dropped.
pub struct Sandbox {
    child: Child,
    pub port: u16,
}

impl Sandbox {
    pub fn start(records: u64, latency_ms: u64) -> Sandbox {
        Sandbox::start_with(records, latency_ms, &[])
    }

    /// [`Sandbox::start`] with more of `apisnap sandbox`'s flags (faults).
    pub fn start_with(records: u64, latency_ms: u64, flags: &[&str]) -> Sandbox {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(BIN)
            .args(["sandbox", "--prerender", "--port", &port.to_string()])
            .args(["--records", &records.to_string()])
            .args(["--latency-ms", &latency_ms.to_string()])
            .args(flags)
            .stdout(Stdio::null())
            .spawn()
            .expect("the sandbox starts");
        // Rendering 10M records takes a while before the port opens.
        let deadline = Instant::now() + Duration::from_secs(300);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the sandbox did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Sandbox { child, port }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
