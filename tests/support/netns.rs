//! Network namespaces for cluster tests: real binaries on one machine, each
//! replica on an address of its own, with partitions made by the kernel.
//!
//! A [`Net`] is one /24, `10.213.S.0/24`, claimed for this process under
//! [`CLAIMS`] so parallel test processes never share one:
//!
//! - a bridge in the root namespace holding `.1` (where the test's own
//!   clients come from) and `.2` (for a server the nodes share, such as
//!   PostgreSQL);
//! - node `i` a namespace of its own at `.(11 + i)`, joined to the bridge by
//!   a veth pair, `lo` up; programs run inside with `ip netns exec`.
//!
//! Partitions are iptables rules inside one node's namespace that drop its
//! traffic with the other nodes (and the shared server), never with `.1`:
//! the test keeps seeing and calling a partitioned node. Everything is
//! removed on drop; what a killed test process left behind is removed by
//! the next [`Net::new`] (each claim records its owner's pid and names).
//! Needs `ip` (iproute2) and `iptables`, and CAP_NET_ADMIN + CAP_SYS_ADMIN.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
};

/// Where subnets are claimed: one directory per third octet in use.
const CLAIMS: &str = "/run/massa-test-netns";
/// The first two octets of every test subnet.
const PREFIX: [u8; 2] = [10, 213];
/// Node `i`'s last octet is `FIRST_NODE + i`.
const FIRST_NODE: u8 = 11;
const MAX_NODES: usize = 9;

pub struct Net {
    octet: u8,
    bridge: String,
    nodes: Vec<String>,
    claim: PathBuf,
}

/// What a partitioned node still reaches, besides the test (`.1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    /// The shared server (`.2`) but no other node.
    Peers,
    /// Nothing but the test.
    Everything,
}

impl Net {
    /// A subnet with `nodes` namespaces; panics saying what is missing
    /// (a tool, or the capability) if it cannot be made.
    pub fn new(nodes: usize) -> Net {
        assert!((1..=MAX_NODES).contains(&nodes), "1 to {MAX_NODES} nodes");
        require_tools();
        sweep_stale();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let (octet, claim) = claim_subnet(pid as usize * 31 + n);
        let mut net = Net { octet, bridge: format!("mb{pid}-{n}"), nodes: Vec::new(), claim };
        net.record(&format!("bridge {}", net.bridge));
        let bridge = net.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        for host in [net.host(), net.shared()] {
            ip(&["addr", "add", &format!("{host}/24"), "dev", &bridge]);
        }
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..nodes {
            let ns = format!("massa-{pid}-{n}-{i}");
            net.record(&format!("netns {ns}"));
            ip(&["netns", "add", &ns]);
            net.nodes.push(ns.clone());
            let outside = format!("mv{pid}-{n}-{i}");
            ip(&["link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            ip(&["link", "set", &outside, "master", &bridge, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", net.addr(i)), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// The test's own address on the bridge (clients, admin calls).
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.octet, 1)
    }

    /// The shared server's address on the bridge.
    pub fn shared(&self) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.octet, 2)
    }

    /// The subnet, for access lists (`pg_hba.conf`).
    pub fn cidr(&self) -> String {
        format!("{}.{}.{}.0/24", PREFIX[0], PREFIX[1], self.octet)
    }

    pub fn addr(&self, node: usize) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.octet, FIRST_NODE + node as u8)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// `program` to run inside node `node`'s namespace (`ip netns exec`
    /// execs it: the child's pid is the program's, so signals reach it).
    pub fn command(&self, node: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.nodes[node]]).arg(program);
        cmd
    }

    /// Drops node `node`'s traffic with every other node, and with the
    /// shared server too for [`Cut::Everything`], both ways.
    pub fn partition(&self, node: usize, cut: Cut) {
        let mut others: Vec<Ipv4Addr> = (0..self.len()).filter(|&i| i != node).map(|i| self.addr(i)).collect();
        if cut == Cut::Everything {
            others.push(self.shared());
        }
        for other in others {
            let other = other.to_string();
            self.iptables(node, &["-A", "INPUT", "-s", &other, "-j", "DROP"]);
            self.iptables(node, &["-A", "OUTPUT", "-d", &other, "-j", "DROP"]);
        }
    }

    /// Ends every partition of node `node`.
    pub fn heal(&self, node: usize) {
        for chain in ["INPUT", "OUTPUT"] {
            self.iptables(node, &["-F", chain]);
        }
    }

    fn iptables(&self, node: usize, args: &[&str]) {
        let mut cmd = self.command(node, "iptables");
        cmd.args(["-w", "5"]).args(args);
        must(cmd, "iptables");
    }

    /// Notes a name in the claim, for [`sweep_stale`] if this process dies.
    fn record(&self, line: &str) {
        let path = self.claim.join("names");
        let mut names = fs::read_to_string(&path).unwrap_or_default();
        names.push_str(line);
        names.push('\n');
        fs::write(path, names).unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        remove_claimed(&self.claim);
    }
}

/// Claims a free third octet (trying from `seed` on), as a directory only
/// one process can create; none in use by any interface already.
fn claim_subnet(seed: usize) -> (u8, PathBuf) {
    fs::create_dir_all(CLAIMS).unwrap_or_else(|e| panic!("creating {CLAIMS}: {e}"));
    let in_use = output(Command::new("ip").args(["-o", "-4", "addr", "show"]), "ip addr show");
    for k in 0..254 {
        let octet = ((seed + k) % 254 + 1) as u8;
        if in_use.contains(&format!(" {}.{}.{octet}.", PREFIX[0], PREFIX[1])) {
            continue;
        }
        let claim = Path::new(CLAIMS).join(octet.to_string());
        if fs::create_dir(&claim).is_ok() {
            fs::write(claim.join("pid"), std::process::id().to_string()).unwrap();
            return (octet, claim);
        }
    }
    panic!("no free subnet {}.{}.x.0/24 (see {CLAIMS})", PREFIX[0], PREFIX[1]);
}

/// Removes the claims (and their namespaces and bridges) of test processes
/// that are gone. A claim without a pid yet is someone's, being made.
fn sweep_stale() {
    for claim in fs::read_dir(CLAIMS).into_iter().flatten().flatten() {
        let Ok(pid) = fs::read_to_string(claim.path().join("pid")) else { continue };
        let alive = Path::new("/proc").join(pid.trim()).exists();
        if !alive {
            remove_claimed(&claim.path());
        }
    }
}

/// Deletes what a claim names, then the claim; idempotent.
fn remove_claimed(claim: &Path) {
    let names = fs::read_to_string(claim.join("names")).unwrap_or_default();
    for line in names.lines() {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        match line.split_once(' ') {
            // Processes a killed test left inside go first; the veth pair
            // goes with its namespace.
            Some(("netns", ns)) => {
                kill_inside(ns);
                quiet(&["netns", "del", ns]);
            }
            Some(("bridge", br)) => quiet(&["link", "del", br]),
            _ => {}
        }
    }
    let _ = fs::remove_dir_all(claim);
}

/// SIGKILLs every process in namespace `ns` (none, unless a test process
/// died without dropping its children).
fn kill_inside(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).stderr(Stdio::null()).output() else { return };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        // SAFETY: signalling a process by id has no memory preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn require_tools() {
    for (tool, package) in [("ip", "iproute2"), ("iptables", "iptables")] {
        let found = Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        assert!(found, "`{tool}` not found: `apt-get install {package}` (.ci/run installs it)");
    }
}

fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    must(cmd, "ip");
}

/// Runs `cmd`, panicking with its stderr (and the missing capability, if
/// that is why) unless it succeeds.
fn must(mut cmd: Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    if out.status.success() {
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Operation not permitted") || err.contains("Permission denied") {
        panic!(
            "{cmd:?} failed: {err}\nthe cluster tests make network namespaces, a bridge and iptables rules: \
             they need CAP_NET_ADMIN and CAP_SYS_ADMIN (run them as root, as CI does)"
        );
    }
    panic!("{cmd:?} failed: {err}");
}

fn output(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
