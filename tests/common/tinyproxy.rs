//! tinyproxy, from Debian's packages: a real egress proxy on loopback.

use std::time::Duration;

/// What this proxy writes in the `Via` header of what it forwards.
pub const VIA: &str = "apisnap-test-proxy";

/// tinyproxy in the foreground on a free loopback port, stopped when dropped.
pub struct Proxy {
    child: std::process::Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Proxy {
    /// `extra`: configuration lines (`BasicAuth user password`, another `Allow`).
    pub fn start(dir: &std::path::Path, extra: &str) -> Option<Proxy> {
        if std::process::Command::new("tinyproxy")
            .arg("-v")
            .output()
            .is_err()
        {
            // CI installs it: there, a missing tool is a failure, not a skip.
            assert!(
                std::env::var("CI").is_err(),
                "tinyproxy is not installed (.ci/run installs it)"
            );
            eprintln!("tinyproxy is not installed: skipping");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join(format!("tinyproxy-{port}.conf"));
        let log = dir.join(format!("tinyproxy-{port}.log"));
        let allow = if extra.contains("Allow") {
            String::new()
        } else {
            "Allow 127.0.0.1\n".into()
        };
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nLogLevel Connect\n\
                 LogFile \"{}\"\n{allow}ViaProxyName \"{VIA}\"\n{extra}\n",
                log.display()
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Proxy { child, port, log });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tinyproxy did not start on port {port}");
    }

    /// What it logged so far (`LogLevel Connect`: a line per connection and request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
