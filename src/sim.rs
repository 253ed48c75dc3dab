//! A simulated network for the pure core: N nodes, a seeded RNG and a virtual clock that jumps
//! straight to the next thing that happens (a delivery or a timer).
//!
//! Links carry the control messages each machine emits, with per-message delay and jitter (so
//! they can arrive out of order), loss and duplication. The network can be partitioned (traffic
//! between two nodes vanishes silently, dials fail) and healed, links can be cut (both ends are
//! told at once), and nodes can crash (gone, silently) and restart from their last persisted
//! record. Each node may run on a skewed clock (it sees virtual time plus its skew), as devices
//! on a real LAN do. Everything a machine tells its application is recorded in `events`, with
//! the virtual (global) time it happened at.
//!
//! The crate's own scenario and property tests run on it, and so does `lansync demo --sim`; apps
//! can use it to test their own handling of the events. Built with the `test-utils` feature
//! (which `cli`, the default, turns on).
//!
//! What lives where: this file holds the network's state, building it (nodes, links) and the
//! faults a test injects; `run` the loop that moves time, messages and dials.

mod run;

use crate::session::{
    Command, Event, Follower, FollowerConfig, Input, Machine, Master, MasterConfig, PeerId, Record,
    Rng, Solo, SoloConfig, Time,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

/// Index of a node in the simulation.
pub type NodeId = usize;

/// Network conditions applied to every message.
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    /// Base one-way delay.
    pub delay: Duration,
    /// Uniform extra delay in [0, jitter).
    pub jitter: Duration,
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Time for a dial to produce a link (or fail).
    pub connect_time: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            delay: Duration::from_millis(2),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            connect_time: Duration::from_millis(20),
        }
    }
}

/// The machine a node runs.
// A simulation holds a handful of nodes: boxing the larger machines would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Role {
    /// A choir master.
    Master(Master),
    /// A choir follower.
    Follower(Follower),
    /// One device of a solo pair.
    Solo(Solo),
}

impl Role {
    fn machine(&mut self) -> &mut dyn Machine {
        match self {
            Role::Master(m) => m,
            Role::Follower(f) => f,
            Role::Solo(s) => s,
        }
    }
    fn remembers_pair(&self) -> bool {
        matches!(self, Role::Solo(s) if s.record().is_some())
    }
    fn timeout(&self) -> Option<Time> {
        match self {
            Role::Master(m) => m.poll_timeout(),
            Role::Follower(f) => f.poll_timeout(),
            Role::Solo(s) => s.poll_timeout(),
        }
    }
}

/// How to rebuild a node after a crash.
#[derive(Clone)]
pub enum Blueprint {
    /// Master settings.
    Master(MasterConfig),
    /// Follower settings.
    Follower(FollowerConfig),
    /// Solo settings.
    Solo(SoloConfig),
}

/// One simulated device.
pub struct Node {
    /// Its machine; `None` while crashed.
    pub role: Option<Role>,
    /// How to rebuild it after a crash.
    pub blueprint: Blueprint,
    /// Whom `Dial` reaches.
    pub dial_target: Option<NodeId>,
    /// Last `Persist` output.
    pub record: Option<Record>,
    /// This node's clock minus virtual time, µs: it sees `now + skew`.
    pub skew_us: i64,
}

#[derive(Debug, Clone)]
enum Delivery {
    Message {
        to: NodeId,
        peer: PeerId,
        data: String,
    },
    /// `dialer`: this end asked for the link, so it must hear an outcome either way.
    /// `admitted`: the device id the answering end's door admitted the link as.
    LinkUp {
        to: NodeId,
        peer: PeerId,
        dialer: bool,
        admitted: Option<String>,
    },
    /// A close takes effect once what was sent before it has arrived.
    Closed {
        node: NodeId,
        peer: PeerId,
    },
    DialFailed {
        to: NodeId,
    },
    DialRefused {
        to: NodeId,
    },
}

#[derive(Debug, Clone, Copy)]
struct LinkEnd {
    node: NodeId,
    remote: NodeId,
    remote_peer: PeerId,
}

/// One recorded application event.
#[derive(Debug, Clone)]
pub struct Logged {
    /// When, in virtual (global) time.
    pub at: Time,
    /// Which node.
    pub node: NodeId,
    /// What.
    pub event: Event,
}

/// The simulated network and its nodes.
pub struct Sim {
    /// Virtual now.
    pub now: Time,
    /// Conditions applied to every message.
    pub net: NetConfig,
    /// The nodes, by id.
    pub nodes: Vec<Node>,
    /// Every application event, in order.
    pub events: Vec<Logged>,
    /// Messages put on the wire (after loss), for cost assertions.
    pub sent: u64,
    rng: Rng,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    pending: BTreeMap<u64, Delivery>,
    order: u64,
    next_peer: PeerId,
    /// (node, peer) → the other end.
    links: BTreeMap<(NodeId, PeerId), LinkEnd>,
    partitions: BTreeSet<(NodeId, NodeId)>,
    closing: BTreeSet<(NodeId, PeerId)>,
    seed: u64,
}

/// Start of virtual time: 2025-01-01, so `ts` values look like real ones.
pub const EPOCH_MS: u64 = 1_735_689_600_000;

/// `t` moved by a signed skew.
fn skewed(t: Time, skew_us: i64) -> Time {
    Time(t.0.saturating_add_signed(skew_us))
}

impl Sim {
    /// An empty network; `seed` decides every random choice.
    pub fn new(seed: u64) -> Sim {
        Sim {
            now: Time::from_millis(EPOCH_MS),
            net: NetConfig::default(),
            nodes: Vec::new(),
            events: Vec::new(),
            sent: 0,
            rng: Rng::new(seed),
            queue: BinaryHeap::new(),
            pending: BTreeMap::new(),
            order: 0,
            next_peer: 1,
            links: BTreeMap::new(),
            partitions: BTreeSet::new(),
            closing: BTreeSet::new(),
            seed,
        }
    }

    fn entropy(&mut self) -> [u8; 32] {
        let mut e = [0u8; 32];
        for chunk in e.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        e
    }

    fn add(
        &mut self,
        role: Role,
        blueprint: Blueprint,
        dial_target: Option<NodeId>,
        skew_us: i64,
    ) -> NodeId {
        self.nodes.push(Node {
            role: Some(role),
            blueprint,
            dial_target,
            record: None,
            skew_us,
        });
        let id = self.nodes.len() - 1;
        self.drain(id);
        id
    }

    /// Adds a master with a fresh session.
    pub fn add_master(&mut self, cfg: MasterConfig) -> NodeId {
        self.add_master_skewed(cfg, 0)
    }

    /// Adds a master whose clock runs `skew_us` ahead of virtual time (behind if negative).
    pub fn add_master_skewed(&mut self, cfg: MasterConfig, skew_us: i64) -> NodeId {
        let entropy = self.entropy();
        let now = skewed(self.now, skew_us);
        let m = Master::new(cfg.clone(), now, entropy);
        self.add(Role::Master(m), Blueprint::Master(cfg), None, skew_us)
    }

    /// Adds an idle follower whose dials reach `master`.
    pub fn add_follower(&mut self, cfg: FollowerConfig, master: NodeId) -> NodeId {
        self.add_follower_skewed(cfg, master, 0)
    }

    /// Adds an idle follower whose clock runs `skew_us` ahead of virtual time.
    pub fn add_follower_skewed(
        &mut self,
        cfg: FollowerConfig,
        master: NodeId,
        skew_us: i64,
    ) -> NodeId {
        let seed = self.rng.next_u64();
        let f = Follower::new(cfg.clone(), seed);
        self.add(
            Role::Follower(f),
            Blueprint::Follower(cfg),
            Some(master),
            skew_us,
        )
    }

    /// What node `n`'s clock reads now.
    pub fn local_now(&self, n: NodeId) -> Time {
        skewed(self.now, self.nodes[n].skew_us)
    }

    /// Two solo devices that dial each other; `a` is the initiator (redials after a loss).
    pub fn add_solo_pair(&mut self, mut a: SoloConfig, mut b: SoloConfig) -> (NodeId, NodeId) {
        a.initiator = true;
        b.initiator = false;
        let (sa, sb) = (self.rng.next_u64(), self.rng.next_u64());
        let n = self.nodes.len();
        let ia = self.add(
            Role::Solo(Solo::new(a.clone(), sa)),
            Blueprint::Solo(a),
            Some(n + 1),
            0,
        );
        let ib = self.add(
            Role::Solo(Solo::new(b.clone(), sb)),
            Blueprint::Solo(b),
            Some(n),
            0,
        );
        (ia, ib)
    }

    /// One more solo device whose dials reach `dial_target` (e.g. a stranger knocking at a
    /// remembered pair's door).
    pub fn add_solo(&mut self, cfg: SoloConfig, dial_target: Option<NodeId>) -> NodeId {
        let seed = self.rng.next_u64();
        let solo = Solo::new(cfg.clone(), seed);
        self.add(Role::Solo(solo), Blueprint::Solo(cfg), dial_target, 0)
    }

    /// Builds a link between two nodes right now, as a completed pairing would.
    pub fn connect(&mut self, a: NodeId, b: NodeId) {
        let (pa, pb) = self.new_link(a, b);
        self.input(a, Input::LinkUp(pa));
        self.input(b, Input::LinkUp(pb));
    }

    fn new_link(&mut self, a: NodeId, b: NodeId) -> (PeerId, PeerId) {
        let (pa, pb) = (self.next_peer, self.next_peer + 1);
        self.next_peer += 2;
        self.links.insert(
            (a, pa),
            LinkEnd {
                node: a,
                remote: b,
                remote_peer: pb,
            },
        );
        self.links.insert(
            (b, pb),
            LinkEnd {
                node: b,
                remote: a,
                remote_peer: pa,
            },
        );
        (pa, pb)
    }

    /// The running master at `n` (panics otherwise: a test bug).
    pub fn master(&self, n: NodeId) -> &Master {
        match &self.nodes[n].role {
            Some(Role::Master(m)) => m,
            _ => panic!("node {n} is not a running master"),
        }
    }
    /// The running follower at `n` (panics otherwise).
    pub fn follower(&self, n: NodeId) -> &Follower {
        match &self.nodes[n].role {
            Some(Role::Follower(f)) => f,
            _ => panic!("node {n} is not a running follower"),
        }
    }
    /// The running solo device at `n` (panics otherwise).
    pub fn solo(&self, n: NodeId) -> &Solo {
        match &self.nodes[n].role {
            Some(Role::Solo(s)) => s,
            _ => panic!("node {n} is not a running solo device"),
        }
    }
    /// Whether node `n` is running.
    pub fn is_up(&self, n: NodeId) -> bool {
        self.nodes[n].role.is_some()
    }

    /// Gives node `n` an application command now.
    pub fn command(&mut self, n: NodeId, cmd: Command) {
        self.input(n, Input::Command(&cmd));
    }

    /// Silently drops all traffic between `a` and `b`; dials between them fail.
    pub fn partition(&mut self, a: NodeId, b: NodeId) {
        self.partitions.insert((a.min(b), a.max(b)));
    }

    /// Isolates a node from every other.
    pub fn isolate(&mut self, a: NodeId) {
        for b in 0..self.nodes.len() {
            if a != b {
                self.partition(a, b);
            }
        }
    }

    /// Removes every partition and fault.
    pub fn heal(&mut self) {
        self.partitions.clear();
        self.net.loss = 0.0;
        self.net.duplicate = 0.0;
    }

    /// Cuts every link between `a` and `b`; both ends are told at once.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        let ends: Vec<(NodeId, PeerId)> = self
            .links
            .iter()
            .filter(|(_, e)| (e.node == a && e.remote == b) || (e.node == b && e.remote == a))
            .map(|(k, _)| *k)
            .collect();
        for (n, p) in &ends {
            self.links.remove(&(*n, *p));
        }
        for (n, p) in ends {
            self.input(n, Input::LinkDown(p));
        }
    }

    /// The node dies: state gone, links silently dead (peers notice by heartbeat).
    pub fn crash(&mut self, n: NodeId) {
        self.nodes[n].role = None;
        self.links.retain(|_, e| e.node != n && e.remote != n);
    }

    /// Restarts a crashed node from its last persisted record.
    pub fn restart(&mut self, n: NodeId) {
        assert!(self.nodes[n].role.is_none(), "node {n} is running");
        let seed = self.rng.next_u64();
        let now = self.local_now(n);
        let role = match (
            self.nodes[n].blueprint.clone(),
            self.nodes[n].record.clone(),
        ) {
            (Blueprint::Master(cfg), Some(Record::Master(rec))) => {
                Role::Master(Master::restore(cfg, now, rec, self.entropy()))
            }
            (Blueprint::Master(cfg), _) => Role::Master(Master::new(cfg, now, self.entropy())),
            (Blueprint::Follower(cfg), Some(Record::Follower(rec))) => {
                Role::Follower(Follower::restore(cfg, seed, now, rec))
            }
            (Blueprint::Follower(cfg), _) => Role::Follower(Follower::new(cfg, seed)),
            (Blueprint::Solo(cfg), Some(Record::Solo(rec))) => {
                Role::Solo(Solo::restore(cfg, rec, now, seed))
            }
            (Blueprint::Solo(cfg), _) => Role::Solo(Solo::new(cfg, seed)),
        };
        self.nodes[n].role = Some(role);
        self.drain(n);
    }

    /// Events of one node, in order.
    pub fn events_of(&self, n: NodeId) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .filter(move |l| l.node == n)
            .map(|l| &l.event)
    }

    /// Events of one node with the virtual (global) time each happened at, so tests can compare
    /// when different nodes did something whatever their clocks say.
    pub fn events_with_time_of(&self, n: NodeId) -> impl Iterator<Item = (Time, &Event)> {
        self.events
            .iter()
            .filter(move |l| l.node == n)
            .map(|l| (l.at, &l.event))
    }

    /// Forgets recorded events (to assert on what happens next).
    pub fn clear_events(&mut self) {
        self.events.clear();
    }

    /// The seed this run was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Node `n`'s end of its newest open link to `remote`.
    pub fn peer_to(&self, n: NodeId, remote: NodeId) -> Option<PeerId> {
        self.links
            .iter()
            .filter(|((node, _), e)| *node == n && e.remote == remote)
            .map(|((_, peer), _)| *peer)
            .max()
    }

    /// Feeds raw bytes to node `n` as if they had just arrived on its link `peer` (a hand-written,
    /// future-version or hostile peer). Bypasses the wire: no delay, loss or link check.
    pub fn inject(&mut self, n: NodeId, peer: PeerId, bytes: &[u8]) {
        self.input(n, Input::Received(peer, bytes));
    }

    /// Tells node `n` that the network came back (interface up, address changed).
    pub fn network_changed(&mut self, n: NodeId) {
        self.input(n, Input::NetworkChanged);
    }
}
