//! A real etcd cluster on loopback for the cluster tests: members are `etcd` processes
//! (Debian's `etcd-server`) with temporary data dirs, stoppable and restartable.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::DEADLINE;

/// One member's addresses and process.
struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A running etcd cluster; every member is killed when it is dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: TempDir,
    token: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers. A cluster that does not
    /// come up (a port taken between choosing it and etcd binding it) is started again on
    /// other ports, once.
    pub fn start(n: usize) -> EtcdCluster {
        for _ in 0..2 {
            let cluster = EtcdCluster::start_once(n);
            if cluster.healthy_within(n, DEADLINE) {
                return cluster;
            }
            eprintln!(
                "etcd did not come up; logs in {}; trying other ports",
                cluster.dir.path().display()
            );
        }
        let cluster = EtcdCluster::start_once(n);
        cluster.wait_healthy(n);
        cluster
    }

    fn start_once(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = format!("graycast-test-{}", std::process::id());
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster { members, dir, token };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster
    }

    /// Whether `count` members answer as healthy before `within` passes.
    fn healthy_within(&self, count: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let healthy =
                self.members.iter().filter(|m| m.child.is_some() && health(m.client)).count();
            if healthy >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let member = &self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client);
        let peer = format!("http://127.0.0.1:{}", member.peer);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", member.name)))
            .expect("log file");
        let child = Command::new("etcd")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", state, "--initial-cluster-token", &self.token])
            // etcd's default request limit (1.5 MiB), as an operator's cluster has it, and
            // quick elections so that the tests do not wait on them.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd runs (Debian: apt-get install etcd-server)");
        self.members[i].child = Some(child);
    }

    /// Waits until `count` members answer `/health` as healthy.
    pub fn wait_healthy(&self, count: usize) {
        let deadline = Instant::now() + DEADLINE * 2;
        loop {
            let healthy =
                self.members.iter().filter(|m| m.child.is_some() && health(m.client)).count();
            if healthy >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd is not healthy; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client URLs, comma separated, as `--etcd-endpoints` takes them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URLs.
    pub fn endpoint_list(&self) -> Vec<String> {
        self.members.iter().map(|m| format!("http://127.0.0.1:{}", m.client)).collect()
    }

    /// Stops a member with SIGTERM and waits for it.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) a member: a stalled member, whose sockets stay
    /// open but which answers nothing.
    pub fn pause(&self, i: usize, paused: bool) {
        if let Some(child) = &self.members[i].child {
            let signal = if paused { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill").arg(signal).arg(child.id().to_string()).status();
        }
    }

    /// Kills a member with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether member `i` runs.
    pub fn runs(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// The client URLs of some members, comma separated.
    pub fn endpoints_of(&self, members: &[usize]) -> String {
        members
            .iter()
            .map(|i| format!("http://127.0.0.1:{}", self.members[*i].client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops every member.
    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }

    /// Starts a stopped member again on its data dir.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} runs");
        self.spawn(i, "existing");
    }

    /// Starts every stopped member again and waits until they all answer.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.restart(i);
            }
        }
        self.wait_healthy(self.members.len());
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                let _ = Command::new("kill").arg("-CONT").arg(child.id().to_string()).status();
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Whether a member answers `/health` as healthy.
fn health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}

/// An etcd key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("/graycast-test-{}/", uuid_like())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A graycast node on the cluster.
pub fn node(cluster: &EtcdCluster, prefix: &str) -> crate::TestServer {
    node_on(&cluster.endpoints(), prefix)
}

/// A graycast node on some members of a cluster (`--etcd-endpoints`).
pub fn node_on(endpoints: &str, prefix: &str) -> crate::TestServer {
    node_with(endpoints, prefix, &[])
}

/// A graycast node on some members of a cluster, with extra flags.
pub fn node_with(endpoints: &str, prefix: &str, extra: &[&str]) -> crate::TestServer {
    let mut args = vec![
        "--store",
        "etcd",
        "--etcd-endpoints",
        endpoints,
        "--etcd-prefix",
        prefix,
        "--etcd-lease-ttl",
        "2",
    ];
    args.extend(extra);
    crate::TestServer::start_with(&args)
}
