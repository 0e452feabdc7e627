//! The mesh as a graph: which nodes can talk, in how many hops, and where it
//! falls apart. Built from a [`Radio`]'s link table with `petgraph`; a link
//! counts when a frame crosses it with probability ≥ 0.5 *both ways* (the
//! core's exchanges are request/reply and neighbour tables are mutual), so
//! the graph is undirected and one-way links are only counted.

use std::collections::VecDeque;

use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::unionfind::UnionFind;
use serde::{Deserialize, Serialize};

use crate::radio::Radio;

/// Delivery probability a link needs to be part of the graph.
pub const MIN_DELIVERY: f64 = 0.5;
/// Above this many nodes the diameter is estimated by double sweeps (a
/// lower bound) instead of a BFS from every node.
pub const EXACT_DIAMETER_MAX_NODES: usize = 4_096;

/// The undirected mesh graph of a scenario.
pub struct Topology {
    graph: UnGraph<u32, f32, u32>,
    /// Mesh members by node index (others have no BLE radio: Dust).
    member: Vec<bool>,
    one_way: u64,
}

/// What a run summary reports about the mesh.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyReport {
    /// Nodes in the mesh graph.
    pub nodes: usize,
    /// Two-way links.
    pub edges: usize,
    /// Links usable in one direction only.
    pub one_way_links: u64,
    /// Connected components (partitions), isolated nodes included.
    pub components: usize,
    /// Component sizes, largest first.
    pub component_sizes: Vec<usize>,
    /// Nodes with no two-way link.
    pub isolated: usize,
    /// Longest shortest path inside any component, hops.
    pub diameter: u32,
    /// False when `diameter` is a double-sweep lower bound (large meshes).
    pub diameter_exact: bool,
    /// Mean number of two-way neighbours.
    pub mean_degree: f64,
    /// Nodes whose loss splits their component.
    pub articulation_points: usize,
    /// Count of nodes by hop distance to the nearest sink (index = hops).
    pub hops_histogram: Vec<u64>,
    /// Mean hops to the nearest sink over the nodes that reach one.
    pub mean_hops: f64,
    /// Mesh nodes with no path to any sink (0 when there are no sinks).
    pub unreachable: usize,
}

impl Topology {
    /// The graph of `radio`'s links for frames of `frame_len` bytes, over the
    /// nodes for which `member` is true (missing entries count as members).
    /// `keep(a, b)` may veto a link (a partition fault).
    pub fn new(radio: &Radio, frame_len: usize, member: &[bool], keep: impl Fn(u32, u32) -> bool) -> Self {
        let n = radio.positions().len();
        let member: Vec<bool> = (0..n).map(|i| member.get(i).copied().unwrap_or(true)).collect();
        let mut graph = UnGraph::<u32, f32, u32>::with_capacity(n, 0);
        for i in 0..n as u32 {
            graph.add_node(i);
        }
        // Delivery probability rises with the mean RSSI: one threshold
        // decides every link.
        let threshold = radio.mean_rssi_for_delivery(MIN_DELIVERY, frame_len) as f32;
        let mut one_way = 0;
        for a in 0..n as u32 {
            if !member[a as usize] {
                continue;
            }
            for l in radio.links(a) {
                let b = l.to;
                if !member.get(b as usize).copied().unwrap_or(false) || !keep(a, b) || l.mean_rssi < threshold {
                    continue;
                }
                let back = radio.links(b);
                let back = back.binary_search_by_key(&a, |r| r.to).ok().map(|k| back[k].mean_rssi);
                match back {
                    Some(r) if r >= threshold && keep(b, a) => {
                        // Each two-way pair once, from its lower end.
                        if a < b {
                            graph.add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), l.mean_rssi.min(r));
                        }
                    }
                    _ => one_way += 1,
                }
            }
        }
        Topology { graph, member, one_way }
    }

    /// The graph (node weight = node index, edge weight = the weaker
    /// direction's mean RSSI, dBm).
    pub fn graph(&self) -> &UnGraph<u32, f32, u32> {
        &self.graph
    }

    /// Two-way neighbours of `node`, ascending.
    pub fn neighbours(&self, node: u32) -> Vec<u32> {
        if node as usize >= self.graph.node_count() {
            return Vec::new();
        }
        let mut v: Vec<u32> = self.graph.neighbors(NodeIndex::new(node as usize)).map(|x| x.index() as u32).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Component label of every node: the smallest node index in its
    /// component (non-members label themselves).
    pub fn components(&self) -> Vec<u32> {
        let n = self.graph.node_count();
        let mut uf = UnionFind::<usize>::new(n);
        for e in self.graph.raw_edges() {
            uf.union(e.source().index(), e.target().index());
        }
        let mut smallest = vec![u32::MAX; n];
        for i in 0..n {
            let r = uf.find_mut(i);
            smallest[r] = smallest[r].min(i as u32);
        }
        (0..n).map(|i| smallest[uf.find_mut(i)]).collect()
    }

    /// Hops from every node to the nearest of `sinks` (multi-source BFS);
    /// `None` for nodes that reach none, and for non-members.
    pub fn hops_to(&self, sinks: &[u32]) -> Vec<Option<u32>> {
        let n = self.graph.node_count();
        let mut dist = vec![None; n];
        let mut queue = VecDeque::new();
        for &s in sinks {
            if (s as usize) < n && self.member[s as usize] && dist[s as usize].is_none() {
                dist[s as usize] = Some(0);
                queue.push_back(s as usize);
            }
        }
        self.bfs(&mut dist, queue);
        dist
    }

    fn bfs(&self, dist: &mut [Option<u32>], mut queue: VecDeque<usize>) -> usize {
        let mut last = queue.front().copied().unwrap_or(0);
        while let Some(u) = queue.pop_front() {
            last = u;
            let du = dist[u].unwrap_or(0);
            for v in self.graph.neighbors(NodeIndex::new(u)) {
                if dist[v.index()].is_none() {
                    dist[v.index()] = Some(du + 1);
                    queue.push_back(v.index());
                }
            }
        }
        last
    }

    /// Eccentricity of `from` inside its component and the farthest node.
    fn sweep(&self, from: usize) -> (u32, usize) {
        let mut dist = vec![None; self.graph.node_count()];
        dist[from] = Some(0);
        let far = self.bfs(&mut dist, VecDeque::from([from]));
        (dist[far].unwrap_or(0), far)
    }

    /// The longest shortest path in any component, and whether it is exact.
    pub fn diameter(&self) -> (u32, bool) {
        let n = self.graph.node_count();
        let members = (0..n).filter(|&i| self.member[i]);
        if self.member.iter().filter(|&&m| m).count() <= EXACT_DIAMETER_MAX_NODES {
            return (members.map(|i| self.sweep(i).0).max().unwrap_or(0), true);
        }
        // Double sweep from the smallest node of each component: a lower
        // bound that is usually exact on geometric graphs.
        let labels = self.components();
        let mut best = 0;
        for i in members.filter(|&i| labels[i] == i as u32) {
            let (_, far) = self.sweep(i);
            best = best.max(self.sweep(far).0);
        }
        (best, false)
    }

    /// The summary figures, hop counts measured to `sinks` (gateways and
    /// Full nodes).
    pub fn report(&self, sinks: &[u32]) -> TopologyReport {
        let n = self.graph.node_count();
        let members: Vec<usize> = (0..n).filter(|&i| self.member[i]).collect();
        let labels = self.components();
        let mut sizes = vec![0usize; n];
        for &i in &members {
            sizes[labels[i] as usize] += 1;
        }
        let mut component_sizes: Vec<usize> = sizes.into_iter().filter(|&s| s > 0).collect();
        component_sizes.sort_unstable_by(|a, b| b.cmp(a));
        let isolated = members.iter().filter(|&&i| self.graph.neighbors(NodeIndex::new(i)).next().is_none()).count();
        let (diameter, diameter_exact) = self.diameter();
        let mean_degree =
            if members.is_empty() { 0.0 } else { 2.0 * self.graph.edge_count() as f64 / members.len() as f64 };
        let hops = self.hops_to(sinks);
        let mut hops_histogram = Vec::new();
        let (mut sum, mut reached, mut unreachable) = (0u64, 0u64, 0usize);
        for &i in &members {
            match hops[i] {
                Some(h) => {
                    if hops_histogram.len() <= h as usize {
                        hops_histogram.resize(h as usize + 1, 0);
                    }
                    hops_histogram[h as usize] += 1;
                    sum += u64::from(h);
                    reached += 1;
                }
                None if !sinks.is_empty() => unreachable += 1,
                None => {}
            }
        }
        TopologyReport {
            nodes: members.len(),
            edges: self.graph.edge_count(),
            one_way_links: self.one_way,
            components: component_sizes.len(),
            component_sizes,
            isolated,
            diameter,
            diameter_exact,
            mean_degree,
            articulation_points: petgraph::algo::articulation_points::articulation_points(&self.graph).len(),
            hops_histogram,
            mean_hops: if reached == 0 { 0.0 } else { sum as f64 / reached as f64 },
            unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{RadioConfig, WorldConfig};
    use crate::world::World;

    fn radio(pos: &[(f64, f64)]) -> Radio {
        let cfg = RadioConfig { shadowing_sd_db: 0.0, ..RadioConfig::default() };
        Radio::new(&cfg, &World::new(&WorldConfig::default()), pos, &vec![0.0; pos.len()], 1)
    }

    #[test]
    fn a_line_is_a_path_graph() {
        // 8 m apart indoors: neighbours link, 16 m is beyond the PER edge.
        let pos: Vec<_> = (0..6).map(|i| (f64::from(i) * 8.0, 0.0)).collect();
        let t = Topology::new(&radio(&pos), 90, &[], |_, _| true);
        let r = t.report(&[0]);
        assert_eq!((r.nodes, r.edges, r.components, r.isolated), (6, 5, 1, 0));
        assert_eq!((r.diameter, r.diameter_exact), (5, true));
        assert!((r.mean_degree - 10.0 / 6.0).abs() < 1e-9);
        assert_eq!(r.hops_histogram, vec![1, 1, 1, 1, 1, 1]);
        assert_eq!(r.articulation_points, 4);
        assert_eq!(t.neighbours(2), vec![1, 3]);
        // A cut in the middle splits it in two.
        let cut = Topology::new(&radio(&pos), 90, &[], |a, b| (a < 3) == (b < 3));
        let r = cut.report(&[0]);
        assert_eq!((r.components, r.component_sizes.clone(), r.unreachable, r.diameter), (2, vec![3, 3], 3, 2));
    }

    #[test]
    fn two_clusters_are_two_partitions_and_hops_count_from_each_sink() {
        let mut pos = Vec::new();
        for (ox, oy) in [(0.0, 0.0), (200.0, 0.0)] {
            for r in 0..3 {
                for c in 0..3 {
                    pos.push((ox + f64::from(c) * 4.0, oy + f64::from(r) * 4.0));
                }
            }
        }
        let t = Topology::new(&radio(&pos), 90, &[], |_, _| true);
        let labels = t.components();
        assert!(labels[..9].iter().all(|&l| l == 0) && labels[9..].iter().all(|&l| l == 9));
        let r = t.report(&[4]);
        assert_eq!((r.components, r.component_sizes.clone(), r.unreachable), (2, vec![9, 9], 9));
        assert_eq!(r.hops_histogram.iter().sum::<u64>(), 9);
        let both = t.report(&[4, 13]);
        assert_eq!(both.unreachable, 0);
        assert_eq!(both.hops_histogram[0], 2);
        // Non-members (Dust) are left out of the graph.
        let mut member = vec![true; 18];
        member[4] = false;
        let r = Topology::new(&radio(&pos), 90, &member, |_, _| true).report(&[4]);
        assert_eq!((r.nodes, r.unreachable, r.mean_hops), (17, 17, 0.0));
        assert!(r.component_sizes == vec![9, 8]);
    }

    #[test]
    fn stronger_transmitter_makes_one_way_links() {
        let pos = [(0.0, 0.0), (14.0, 0.0)];
        let cfg = RadioConfig { shadowing_sd_db: 0.0, ..RadioConfig::default() };
        let r = Radio::new(&cfg, &World::new(&WorldConfig::default()), &pos, &[8.0, -8.0], 1);
        let t = Topology::new(&r, 90, &[], |_, _| true);
        let rep = t.report(&[]);
        assert_eq!((rep.edges, rep.one_way_links, rep.components, rep.unreachable), (0, 1, 2, 0));
    }

    #[test]
    fn double_sweep_agrees_with_exact_on_a_grid() {
        let pos: Vec<_> = (0..30).map(|i| (f64::from(i % 6) * 8.0, f64::from(i / 6) * 8.0)).collect();
        let t = Topology::new(&radio(&pos), 90, &[], |_, _| true);
        // 8 m sides and 11.3 m diagonals link, 16 m does not: Chebyshev
        // distance, corner to corner 5.
        let (exact, _) = t.diameter();
        let (_, far) = t.sweep(0);
        assert_eq!((t.sweep(far).0, exact), (5, 5));
    }
}
