//! The diversity sketch: a bounded, fixed-memory summary of the frames that were kept, so that
//! the novelty of a new frame can be scored against everything kept so far in microseconds.
//!
//! A [`Sketch<K, D>`] holds at most `K` centres of dimension `D` in a `heapless::Vec`, each with a
//! weight (how many kept points it stands for), plus one radius `r`. Its size is known at
//! compile time (`Sketch<256, 64>` is about 67 KB) and neither [`Sketch::novelty`] nor
//! [`Sketch::insert`] allocates.
//!
//! **Novelty** of `x` is the Euclidean distance to the nearest centre. Inputs are expected to be
//! unit vectors (the output of [`crate::select::embedding::Projector`]), so distances lie in `[0, 2]`; an
//! empty sketch answers [`EMPTY_NOVELTY`] = 2.0, the largest distance between unit vectors, so
//! the policy always gets a finite number. A vector with a NaN or infinite component scores 0.0
//! (a broken embedding is no evidence of novelty) and is ignored by `insert`.
//!
//! # Update rule (streaming k-centre with radius doubling)
//!
//! This is the doubling algorithm of Charikar, Chekuri, Feder and Motwani ("Incremental
//! clustering and dynamic information retrieval", STOC 1997), changed so that the newest point
//! is always a centre (after `insert(x)`, `novelty(x) == 0`). `insert(x)`:
//!
//! 0. If `x` is at distance 0 from a centre, that centre's weight grows by one; nothing else
//!    changes.
//! 1. **Fold** the previous newest point: if the last centre lies within `r` of another centre
//!    (it was only kept as a centre because it was the newest), it is merged into its nearest
//!    centre (weights add, positions never move).
//! 2. If there is room (fewer than `K` centres), `x` is appended.
//! 3. Otherwise (`K` centres, `x` would be the `K+1`-th): **double** `r` (the first time the
//!    sketch overflows, `r` = 0 becomes the smallest pairwise distance among the `K+1` points
//!    instead), then **greedily re-select**: `x` first, then the old centres by decreasing
//!    weight; a centre is kept if it is farther than `r` from every centre kept before it, and
//!    every other centre is merged into its nearest kept centre (weights add, positions never
//!    move). If nothing merged, double again and repeat. Once one centre merged, `x` fits.
//!
//! Invariants after every call (proved by induction; checked by the property tests):
//!
//! * at most `K` centres, and `novelty(x) == 0` for the point just inserted;
//! * **coverage**: every point ever inserted lies within `2r` of some centre. (A merge at
//!   re-selection moves a point at most `2r_old` from its old centre plus `r_new` from that
//!   centre to the kept one: `2r_old + r_new = 2r_new` because `r_new >= 2r_old`. The fold in
//!   step 1 moves a single point by at most `r`);
//! * **separation**: all centres except possibly the last are pairwise farther apart than `r`;
//! * **approximation**: `r <= 4·OPT(K−1)`, so the covering radius `2r <= 8·OPT(K−1)`, where
//!   `OPT(m)` is the optimal m-centre radius of all points inserted so far. At the first
//!   doubling the `K` centres are pairwise farther than `r` apart, so two of them share a
//!   centre of any (K−1)-clustering and `OPT(K−1) > r/2`; every further doubling in the same
//!   step, and the initial radius, are justified by `K+1` points pairwise `> r`, i.e.
//!   `OPT(K) > r/2`. Doubling then gives `r_new = 2r < 4·OPT`. The bound is against `K−1`
//!   rather than `K` centres because one slot pays for keeping the newest point a centre even
//!   when it is close to an old one; without the fold in step 1 (always appending `x`, doubling
//!   whenever `K+1`), repeated near-duplicates would double `r` without bound.
//!
//! # Merge
//!
//! [`Sketch::merge`] combines two sketches (two vehicles): both newest points are folded (step
//! 1), the centres are united, `r = max(r_a, r_b)` and, unless the union already has at most `K`
//! centres pairwise farther apart than `r` (exact duplicates are combined first at no cost), the
//! union is reduced by the same double-and-greedy step, repeated until at most `K` centres are
//! left. Guarantee, with `r'` the merged radius and `m = max(r_a, r_b)`: every point covered by
//! either input (within `2r_a` of a centre of `a`, or `2r_b` of `b`) is within `2r'` of a merged
//! centre, and every centre of either input is within `2r'` of a merged centre. If nothing had to
//! be reduced, `r' = m` and the fold moved one point by at most `m`. Otherwise the reduction
//! merges at radii `r_1 = 2m, r_2 = 4m, …, r_j = r'` (or `r_1` = the smallest distance when
//! `m = 0`), so a covered point moves at most `2m + r_1 + … + r_j = 2^(j+1)·m = 2r'` and an input
//! centre at most `m + r_1 + … + r_j < 2r'`. The merged radius satisfies
//! `r' <= max(2m, 4·OPT(K))` (only the first doubling can be unjustified), so each level of
//! merging can at most double the approximation factor. Which centres survive depends on the
//! order of the operands, but both orders give the same guarantee; the merged sketch forgets
//! which point was newest.
//!
//! # Limits
//!
//! The radius never shrinks and grows by factors of 2. With unit vectors (distances ≤ 2) a
//! radius ≥ 1 makes the coverage bound vacuous and the separation rule leaves only a few
//! centres: on near-equidistant data (many more than `K` well-separated directions, e.g. random
//! unit vectors in 64 dimensions) the sketch collapses to 1–2 centres and stays there.

//! # Serialisation
//!
//! [`Sketch::to_bytes`] writes postcard: a header (magic `ESSK`, [`FORMAT_VERSION`], `K`, `D`)
//! then the radius and the centres. [`Sketch::from_bytes`] refuses another version or another
//! `K`/`D` with an error naming the expected and found values, and checks every field (centre
//! count, dimension, finite coordinates, non-zero weights, radius); corrupt or truncated bytes
//! give an error, never a panic.

pub use super::sketch_file::{SketchError, FORMAT_VERSION};

/// Novelty reported by an empty sketch: the largest distance between two unit vectors.
pub const EMPTY_NOVELTY: f32 = 2.0;

/// Accumulator width of the distance loop (two NEON / SSE registers, one AVX register).
const LANES: usize = 8;

/// One centre of the sketch: a point and how many inserted points it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Centre<const D: usize> {
    pub(super) point: [f32; D],
    pub(super) weight: u64,
}

impl<const D: usize> Centre<D> {
    pub fn point(&self) -> &[f32; D] {
        &self.point
    }

    /// Number of inserted points this centre stands for (≥ 1).
    pub fn weight(&self) -> u64 {
        self.weight
    }
}

/// Bounded summary of the kept points; see the module documentation for the rule and its
/// guarantees.
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch<const K: usize, const D: usize> {
    pub(super) centres: heapless::Vec<Centre<D>, K>,
    pub(super) radius: f32,
}

impl<const K: usize, const D: usize> Default for Sketch<K, D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const K: usize, const D: usize> Sketch<K, D> {
    const VALID_SHAPE: () = assert!(K >= 1 && D >= 1, "a sketch needs K >= 1 and D >= 1");

    /// An empty sketch (radius 0).
    pub const fn new() -> Self {
        let () = Self::VALID_SHAPE;
        Sketch {
            centres: heapless::Vec::new(),
            radius: 0.0,
        }
    }

    /// Distance from `x` to the nearest centre; [`EMPTY_NOVELTY`] when empty, 0.0 when `x` is not
    /// finite. Allocation-free, O(K·D).
    pub fn novelty(&self, x: &[f32; D]) -> f32 {
        if self.centres.is_empty() {
            return EMPTY_NOVELTY;
        }
        if !is_finite(x) {
            return 0.0;
        }
        let mut best = f32::INFINITY;
        for c in &self.centres {
            let d = sq_dist(&c.point, x);
            if d < best {
                best = d;
            }
        }
        best.sqrt()
    }

    /// Records a kept point; afterwards `novelty(x) == 0`. Non-finite points are ignored.
    /// Allocation-free (the re-selection scratch lives on the stack).
    pub fn insert(&mut self, x: &[f32; D]) {
        if !is_finite(x) {
            return;
        }
        // 0. Exact duplicate of a centre.
        if let Some((i, d2)) = nearest(&self.centres, x, None) {
            if d2 == 0.0 {
                let c = &mut self.centres[i];
                c.weight = c.weight.saturating_add(1);
                return;
            }
        }
        // 1. Fold the previous newest point if it only was a centre because it was newest.
        fold_last(&mut self.centres, self.radius);
        // 2. Room left.
        if self.centres.len() < K {
            self.push(*x, 1);
            return;
        }
        // 3. Full: double the radius and re-select greedily, newest first, until a centre
        // merges (a pass that merges nothing changes nothing).
        let mut r = if self.radius == 0.0 {
            // First overflow: the smallest pairwise distance, so the closest pair merges.
            min_pairwise_with(&self.centres, x)
        } else {
            self.radius * 2.0
        };
        let mut order = [0usize; K];
        let mut kept = [false; K];
        loop {
            let (len, absorbed) = greedy_pass(&mut self.centres, Some(x), r, &mut order, &mut kept);
            // Terminates: once r reaches the smallest pairwise distance (or +inf) a pair merges.
            if len < K {
                self.centres.truncate(len);
                self.radius = r;
                self.push(*x, absorbed.saturating_add(1));
                return;
            }
            r *= 2.0;
        }
    }

    /// Current radius `r`: every inserted point is within `2r` of a centre.
    pub fn radius(&self) -> f32 {
        self.radius
    }

    pub fn len(&self) -> usize {
        self.centres.len()
    }

    pub fn is_empty(&self) -> bool {
        self.centres.is_empty()
    }

    /// The capacity `K`.
    pub const fn capacity(&self) -> usize {
        K
    }

    /// The centres, oldest first (the newest point, when it is a centre of its own, is last).
    pub fn centres(&self) -> &[Centre<D>] {
        &self.centres
    }

    /// Number of points inserted (and merged in), saturating at `u64::MAX`.
    pub fn total_weight(&self) -> u64 {
        self.centres
            .iter()
            .fold(0u64, |acc, c| acc.saturating_add(c.weight))
    }

    /// Combines `other` into `self`; see the module documentation for the guarantee.
    pub fn merge(&mut self, other: &Self) {
        let mut union: Vec<Centre<D>> = Vec::with_capacity(2 * K);
        let mut ours = self.centres.clone();
        fold_last(&mut ours, self.radius);
        union.extend(ours.iter().cloned());
        let mut theirs = other.centres.clone();
        fold_last(&mut theirs, other.radius);
        union.extend(theirs.iter().cloned());

        let mut r = self.radius.max(other.radius);
        let mut order = vec![0usize; union.len()];
        let mut kept = vec![false; union.len()];
        // Exact duplicates combine without moving anything.
        let len = greedy_pass(&mut union, None, 0.0, &mut order, &mut kept).0;
        union.truncate(len);
        while union.len() > K || !separated(&union, r) {
            r = if r == 0.0 {
                min_pairwise(&union)
            } else {
                r * 2.0
            };
            let n = union.len();
            let len = greedy_pass(&mut union, None, r, &mut order[..n], &mut kept[..n]).0;
            union.truncate(len);
        }
        self.centres.clear();
        for c in union {
            // Cannot fail: the loop above leaves at most K centres.
            let _ = self.centres.push(c);
        }
        self.radius = r;
    }

    pub(super) fn push(&mut self, point: [f32; D], weight: u64) {
        // Callers make room first; a full sketch drops the point rather than panic.
        let pushed = self.centres.push(Centre { point, weight });
        debug_assert!(pushed.is_ok(), "sketch over capacity");
    }
}

pub(super) fn is_finite<const D: usize>(x: &[f32; D]) -> bool {
    x.iter().all(|v| v.is_finite())
}

/// Squared Euclidean distance, written as 8 independent lanes so it vectorises.
#[inline(always)]
fn sq_dist<const D: usize>(a: &[f32; D], b: &[f32; D]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for ((s, p), q) in acc.iter_mut().zip(xa).zip(xb) {
            let d = p - q;
            *s += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (p, q) in ta.iter().zip(tb) {
        let d = p - q;
        tail += d * d;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[inline]
fn dist<const D: usize>(a: &[f32; D], b: &[f32; D]) -> f32 {
    sq_dist(a, b).sqrt()
}

/// Index and squared distance of the centre nearest to `x`, skipping index `skip`.
fn nearest<const D: usize>(
    centres: &[Centre<D>],
    x: &[f32; D],
    skip: Option<usize>,
) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (i, c) in centres.iter().enumerate() {
        if Some(i) == skip {
            continue;
        }
        let d = sq_dist(&c.point, x);
        if best.is_none_or(|(_, b)| d < b) {
            best = Some((i, d));
        }
    }
    best
}

/// Step 1: merges the last centre into its nearest other centre when it lies within `r` of it.
fn fold_last<const D: usize, const N: usize>(centres: &mut heapless::Vec<Centre<D>, N>, r: f32) {
    let Some(last) = centres.len().checked_sub(1) else {
        return;
    };
    if let Some((j, d2)) = nearest(centres, &centres[last].point, Some(last)) {
        if d2.sqrt() <= r {
            if let Some(p) = centres.pop() {
                let c = &mut centres[j];
                c.weight = c.weight.saturating_add(p.weight);
            }
        }
    }
}

/// Smallest pairwise distance among the centres and `x`.
fn min_pairwise_with<const D: usize>(centres: &[Centre<D>], x: &[f32; D]) -> f32 {
    let mut best = min_pairwise(centres);
    for c in centres {
        best = best.min(dist(&c.point, x));
    }
    best
}

/// Smallest pairwise distance (infinity for fewer than two centres).
fn min_pairwise<const D: usize>(centres: &[Centre<D>]) -> f32 {
    let mut best = f32::INFINITY;
    for (i, a) in centres.iter().enumerate() {
        for b in &centres[i + 1..] {
            best = best.min(dist(&a.point, &b.point));
        }
    }
    best
}

/// Whether all centres are pairwise farther apart than `r`.
fn separated<const D: usize>(centres: &[Centre<D>], r: f32) -> bool {
    centres.iter().enumerate().all(|(i, a)| {
        centres[i + 1..]
            .iter()
            .all(|b| dist(&a.point, &b.point) > r)
    })
}

/// One greedy re-selection at radius `r`: `first` (when given) is kept, then the points by
/// decreasing weight (ties: lower index first); a point is kept when farther than `r` from every
/// point kept before it, otherwise its weight goes to its nearest kept point. Kept points are
/// moved to the front in their original order. Returns the number kept in `pts` and the weight
/// absorbed by `first`. `order` and `kept` are scratch of `pts.len()` entries.
fn greedy_pass<const D: usize>(
    pts: &mut [Centre<D>],
    first: Option<&[f32; D]>,
    r: f32,
    order: &mut [usize],
    kept: &mut [bool],
) -> (usize, u64) {
    let n = pts.len();
    let (order, kept) = (&mut order[..n], &mut kept[..n]);
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    order.sort_unstable_by(|&a, &b| pts[b].weight.cmp(&pts[a].weight).then(a.cmp(&b)));
    for pos in 0..n {
        let i = order[pos];
        let p = &pts[i].point;
        let keep = first.is_none_or(|f| dist(p, f) > r)
            && order[..pos]
                .iter()
                .all(|&j| !kept[j] || dist(p, &pts[j].point) > r);
        kept[i] = keep;
    }
    let mut absorbed = 0u64;
    for i in 0..n {
        if kept[i] {
            continue;
        }
        let p = &pts[i].point;
        let mut best: (Option<usize>, f32) = (None, first.map_or(f32::INFINITY, |f| dist(p, f)));
        for j in 0..n {
            if kept[j] {
                let d = dist(p, &pts[j].point);
                if d < best.1 {
                    best = (Some(j), d);
                }
            }
        }
        let w = pts[i].weight;
        match best.0 {
            Some(j) => pts[j].weight = pts[j].weight.saturating_add(w),
            None => absorbed = absorbed.saturating_add(w),
        }
    }
    let mut len = 0;
    for (i, &k) in kept.iter().enumerate() {
        if k {
            pts.swap(len, i);
            len += 1;
        }
    }
    (len, absorbed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::sketch_file::{BodyOut, CentreOut, Header, MAGIC};
    use crate::util::rng::SplitMix64;
    use proptest::prelude::*;

    /// Slack for float rounding in the triangle-inequality bounds.
    fn within(d: f32, bound: f32) -> bool {
        d <= bound * (1.0 + 1e-4) + 1e-5
    }

    fn p1(v: f32) -> [f32; 1] {
        [v]
    }

    fn points<const D: usize, const K: usize>(s: &Sketch<K, D>) -> Vec<([f32; D], u64)> {
        s.centres()
            .iter()
            .map(|c| (*c.point(), c.weight()))
            .collect()
    }

    fn sketch_of<const K: usize, const D: usize>(xs: &[[f32; D]]) -> Sketch<K, D> {
        let mut s = Sketch::new();
        for x in xs {
            s.insert(x);
        }
        s
    }

    /// Radius of Gonzalez's farthest-first m-centre clustering: an upper bound on OPT(m).
    fn gonzalez<const D: usize>(xs: &[[f32; D]], m: usize) -> f32 {
        let Some(first) = xs.first() else {
            return 0.0;
        };
        let mut d: Vec<f32> = xs.iter().map(|x| dist(x, first)).collect();
        for _ in 1..m {
            let (i, _) = d
                .iter()
                .enumerate()
                .fold((0, -1.0f32), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            let c = xs[i];
            for (dj, x) in d.iter_mut().zip(xs) {
                *dj = dj.min(dist(x, &c));
            }
        }
        d.into_iter().fold(0.0, f32::max)
    }

    fn check_invariants<const K: usize, const D: usize>(s: &Sketch<K, D>, inserted: &[[f32; D]]) {
        assert!(s.len() <= K);
        let r = s.radius();
        for x in inserted {
            assert!(
                within(s.novelty(x), 2.0 * r),
                "{x:?} not within 2r={}",
                2.0 * r
            );
        }
        // Separation: all centres but the last are pairwise farther than r.
        let c = s.centres();
        let settled = &c[..c.len().saturating_sub(1)];
        assert!(separated(settled, r), "centres not separated at r={r}");
        assert!(c.iter().all(|c| c.weight() >= 1));
    }

    #[test]
    fn empty_sketch_has_finite_max_novelty() {
        let s: Sketch<4, 3> = Sketch::new();
        assert_eq!(s.novelty(&[1.0, 0.0, 0.0]), EMPTY_NOVELTY);
        assert_eq!(s.len(), 0);
        assert!(s.is_empty());
        assert_eq!(s.total_weight(), 0);
        assert_eq!(s.radius(), 0.0);
        assert_eq!(s.capacity(), 4);
    }

    #[test]
    fn non_finite_points_score_zero_and_are_ignored() {
        let mut s: Sketch<4, 2> = Sketch::new();
        s.insert(&[1.0, 0.0]);
        assert_eq!(s.novelty(&[f32::NAN, 0.0]), 0.0);
        s.insert(&[f32::INFINITY, 0.0]);
        s.insert(&[0.0, f32::NAN]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.total_weight(), 1);
    }

    #[test]
    fn duplicates_add_weight() {
        let mut s: Sketch<2, 2> = Sketch::new();
        for _ in 0..5 {
            s.insert(&[0.5, 0.5]);
        }
        assert_eq!(points(&s), vec![([0.5, 0.5], 5)]);
        assert_eq!(s.novelty(&[0.5, 0.5]), 0.0);
        assert_eq!(s.novelty(&[0.5, 1.5]), 1.0);
    }

    #[test]
    fn k2_line_initial_radius_then_doubling_chain() {
        let mut s: Sketch<2, 1> = Sketch::new();
        s.insert(&p1(0.0));
        s.insert(&p1(10.0));
        assert_eq!(s.radius(), 0.0);
        // First overflow: r = smallest pairwise distance (3); 0 merges into the new point 3.
        s.insert(&p1(3.0));
        assert_eq!(s.radius(), 3.0);
        assert_eq!(points(&s), vec![([10.0], 1), ([3.0], 2)]);
        // A far point: smallest distance is 7, so r doubles twice (3 -> 6 -> 12); greedy keeps
        // 20 then 3 (heavier), and 10 merges into its nearest kept centre 3.
        s.insert(&p1(20.0));
        assert_eq!(s.radius(), 12.0);
        assert_eq!(points(&s), vec![([3.0], 3), ([20.0], 1)]);
        assert_eq!(s.novelty(&p1(20.0)), 0.0);
        check_invariants(&s, &[p1(0.0), p1(10.0), p1(3.0), p1(20.0)]);
    }

    #[test]
    fn k2_close_point_doubles_once() {
        let mut s: Sketch<2, 1> = sketch_of(&[p1(0.0), p1(10.0), p1(3.0)]);
        assert_eq!(s.radius(), 3.0);
        s.insert(&p1(4.5));
        assert_eq!(s.radius(), 6.0);
        assert_eq!(points(&s), vec![([4.5], 4)]);
        check_invariants(&s, &[p1(0.0), p1(10.0), p1(3.0), p1(4.5)]);
    }

    #[test]
    fn newest_close_point_is_folded_at_next_insert() {
        let mut s: Sketch<3, 1> = sketch_of(&[p1(0.0), p1(10.0), p1(20.0), p1(5.0)]);
        assert_eq!(s.radius(), 5.0);
        assert_eq!(points(&s), vec![([20.0], 1), ([5.0], 3)]);
        s.insert(&p1(7.0)); // within r of 5: a centre only while it is the newest
        assert_eq!(s.novelty(&p1(7.0)), 0.0);
        assert_eq!(s.len(), 3);
        s.insert(&p1(30.0)); // folds 7 into 5, then appends 30 (no doubling)
        assert_eq!(points(&s), vec![([20.0], 1), ([5.0], 4), ([30.0], 1)]);
        assert_eq!(s.radius(), 5.0);
        assert_eq!(s.novelty(&p1(7.0)), 2.0);
    }

    #[test]
    fn merge_hand_built() {
        let mut a: Sketch<2, 1> = sketch_of(&[p1(0.0), p1(10.0)]);
        let b: Sketch<2, 1> = sketch_of(&[p1(5.0), p1(20.0)]);
        a.merge(&b);
        // Union of 4 > K: r = 5 (smallest distance) keeps 0, 10, 20; still 3 > K, r = 10.
        assert_eq!(a.radius(), 10.0);
        assert_eq!(points(&a), vec![([0.0], 3), ([20.0], 1)]);
        check_invariants(&a, &[p1(0.0), p1(10.0), p1(5.0), p1(20.0)]);

        // Fits without reduction: nothing moves, radius stays.
        let mut c: Sketch<4, 1> = sketch_of(&[p1(0.0)]);
        c.merge(&sketch_of(&[p1(1.0), p1(0.0)]));
        assert_eq!(c.radius(), 0.0);
        assert_eq!(points(&c), vec![([0.0], 2), ([1.0], 1)]);
    }

    #[test]
    fn version_and_shape_mismatch_are_named() {
        let s: Sketch<4, 3> = sketch_of(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        let bytes = s.to_bytes();

        let mut v2 = postcard::to_allocvec(&Header {
            magic: MAGIC,
            version: 99,
            k: 4,
            d: 3,
        })
        .unwrap();
        let header_len = postcard::take_from_bytes::<Header>(&bytes).unwrap().1.len();
        v2.extend_from_slice(&bytes[bytes.len() - header_len..]);
        let e = Sketch::<4, 3>::from_bytes(&v2).unwrap_err();
        assert_eq!(
            e,
            SketchError::Version {
                expected: FORMAT_VERSION,
                found: 99
            }
        );
        assert_eq!(
            e.to_string(),
            "sketch format version mismatch: expected version 1, found version 99"
        );

        let e = Sketch::<8, 3>::from_bytes(&bytes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sketch shape mismatch: expected K=8 centres of dimension D=3, found K=4, D=3"
        );
        let e = Sketch::<4, 2>::from_bytes(&bytes).unwrap_err();
        assert!(matches!(
            e,
            SketchError::Shape {
                expected_d: 2,
                found_d: 3,
                ..
            }
        ));

        let e = Sketch::<4, 3>::from_bytes(b"hello, world").unwrap_err();
        assert!(matches!(e, SketchError::NotASketch { .. }), "{e}");
    }

    #[test]
    fn truncated_and_invalid_bytes_are_refused() {
        let s: Sketch<4, 3> = sketch_of(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        let bytes = s.to_bytes();
        assert_eq!(Sketch::<4, 3>::from_bytes(&bytes).unwrap(), s);
        for n in 0..bytes.len() {
            assert!(
                Sketch::<4, 3>::from_bytes(&bytes[..n]).is_err(),
                "prefix {n}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Sketch::<4, 3>::from_bytes(&long).is_err());

        let encode = |radius: f32, centres: &[(u64, &[f32])]| {
            let header = Header {
                magic: MAGIC,
                version: FORMAT_VERSION,
                k: 4,
                d: 3,
            };
            let body = BodyOut {
                radius,
                centres: centres
                    .iter()
                    .map(|&(weight, point)| CentreOut { weight, point })
                    .collect(),
            };
            let b = postcard::to_allocvec(&header).unwrap();
            postcard::to_extend(&body, b).unwrap()
        };
        let ok: &[f32] = &[0.0, 0.0, 1.0];
        assert!(Sketch::<4, 3>::from_bytes(&encode(0.5, &[(1, ok)])).is_ok());
        for bad in [
            encode(f32::NAN, &[(1, ok)]),
            encode(-1.0, &[(1, ok)]),
            encode(0.5, &[(0, ok)]),
            encode(0.5, &[(1, &[0.0, 1.0])]),
            encode(0.5, &[(1, &[0.0, f32::NAN, 1.0])]),
            encode(0.5, &[(1, ok); 5]),
        ] {
            let e = Sketch::<4, 3>::from_bytes(&bad).unwrap_err();
            assert!(matches!(e, SketchError::Invalid(_)), "{e}");
        }
    }

    /// Rough timing at the production size (test profile, not release; not asserted).
    #[test]
    fn timing_k256_d64() {
        const K: usize = 256;
        const D: usize = 64;
        let mut rng = SplitMix64::new(7);
        let stream: Vec<[f32; D]> = (0..K + 1000)
            .map(|_| {
                let mut x = [0.0f32; D];
                x.iter_mut().for_each(|v| *v = rng.next_gaussian() as f32);
                let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
                x.iter_mut().for_each(|v| *v /= n);
                x
            })
            .collect();
        let mut s: Box<Sketch<K, D>> = Box::default();
        for x in &stream[..K] {
            s.insert(x);
        }
        assert_eq!(s.len(), K);
        let t = std::time::Instant::now();
        let mut acc = 0.0;
        for x in &stream[K..] {
            acc += s.novelty(x);
        }
        let novelty = t.elapsed() / 1000;
        let t = std::time::Instant::now();
        let mut full = s.clone();
        full.insert(&stream[K]);
        let reduction = t.elapsed();
        eprintln!(
            "Sketch<{K},{D}> ({} bytes): novelty {novelty:?}/call at {K} centres (sum {acc:.1}); \
             insert into the full sketch {reduction:?} (-> {} centres, r={:.3})",
            std::mem::size_of::<Sketch<K, D>>(),
            full.len(),
            full.radius()
        );
        check_invariants(&full, &stream[..=K]);
    }

    fn point3() -> impl Strategy<Value = [f32; 3]> {
        prop_oneof![
            // Integer grid: duplicates and equal distances (ties).
            prop::array::uniform3(-3i8..=3).prop_map(|a| a.map(f32::from)),
            prop::array::uniform3(-10.0f32..10.0),
            prop::array::uniform3(-1e-3f32..1e-3),
            prop::array::uniform3(-1e4f32..1e4),
        ]
    }

    fn point1() -> impl Strategy<Value = [f32; 1]> {
        prop_oneof![
            (-20i8..=20).prop_map(|v| [f32::from(v)]),
            (-100.0f32..100.0).prop_map(|v| [v]),
            (0u32..12).prop_map(|e| [2f32.powi(e as i32)]),
        ]
    }

    fn check_stream<const K: usize, const D: usize>(xs: &[[f32; D]]) -> Result<(), TestCaseError> {
        let mut s: Sketch<K, D> = Sketch::new();
        let mut last_r = 0.0;
        for (i, x) in xs.iter().enumerate() {
            s.insert(x);
            prop_assert!(s.len() <= K);
            prop_assert_eq!(s.novelty(x), 0.0);
            prop_assert!(s.radius() >= last_r);
            last_r = s.radius();
            check_invariants(&s, &xs[..=i]);
        }
        prop_assert_eq!(s.total_weight(), xs.len() as u64);
        // r <= 4·OPT(K-1) <= 4·Gonzalez(K-1).
        if K > 1 {
            let g = gonzalez(xs, K - 1);
            prop_assert!(
                within(s.radius(), 4.0 * g),
                "r={} gonzalez={}",
                s.radius(),
                g
            );
        }
        Ok(())
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn insert_keeps_capacity_coverage_and_approximation(
            xs in prop::collection::vec(point3(), 0..60)
        ) {
            check_stream::<4, 3>(&xs)?;
        }

        /// On a line with K = 2 the triangle-inequality bounds are nearly tight.
        #[test]
        fn insert_invariants_on_a_line(xs in prop::collection::vec(point1(), 0..40)) {
            check_stream::<2, 1>(&xs)?;
            check_stream::<3, 1>(&xs)?;
        }

        #[test]
        fn merge_covers_both_inputs_in_either_order(
            xs in prop::collection::vec(point3(), 0..30),
            ys in prop::collection::vec(point3(), 0..30),
        ) {
            let a: Sketch<4, 3> = sketch_of(&xs);
            let b: Sketch<4, 3> = sketch_of(&ys);
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            for m in [&ab, &ba] {
                prop_assert!(m.len() <= 4);
                prop_assert!(m.radius() >= a.radius().max(b.radius()));
                prop_assert!(separated(m.centres(), m.radius()));
                prop_assert_eq!(m.total_weight(), a.total_weight() + b.total_weight());
                let bound = 2.0 * m.radius();
                for c in a.centres().iter().chain(b.centres()) {
                    prop_assert!(within(m.novelty(c.point()), bound));
                }
                check_invariants(m, &xs);
                check_invariants(m, &ys);
            }
            // Inserting after a merge keeps the invariants.
            let mut m = ab.clone();
            for x in &ys {
                m.insert(x);
                prop_assert_eq!(m.novelty(x), 0.0);
            }
            check_invariants(&m, &xs);
            check_invariants(&m, &ys);
        }

        #[test]
        fn bytes_round_trip_exactly(xs in prop::collection::vec(point3(), 0..40)) {
            let s: Sketch<4, 3> = sketch_of(&xs);
            let bytes = s.to_bytes();
            let t = Sketch::<4, 3>::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&t, &s);
            prop_assert_eq!(t.to_bytes(), bytes);
        }

        #[test]
        fn random_bytes_never_panic(
            noise in prop::collection::vec(any::<u8>(), 0..200),
            with_header in any::<bool>(),
        ) {
            let mut bytes = Vec::new();
            if with_header {
                let header = Header { magic: MAGIC, version: FORMAT_VERSION, k: 4, d: 3 };
                bytes = postcard::to_allocvec(&header).unwrap();
            }
            bytes.extend_from_slice(&noise);
            if let Ok(s) = Sketch::<4, 3>::from_bytes(&bytes) {
                prop_assert!(s.len() <= 4);
                prop_assert!(s.centres().iter().all(|c| is_finite(c.point())));
            }
        }

        #[test]
        fn mutated_bytes_never_panic(
            xs in prop::collection::vec(point3(), 1..20),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let s: Sketch<4, 3> = sketch_of(&xs);
            let mut bytes = s.to_bytes();
            for (i, v) in edits {
                let i = i.index(bytes.len());
                bytes[i] = v;
            }
            let n = cut.index(bytes.len() + 1);
            let _ = Sketch::<4, 3>::from_bytes(&bytes);
            let _ = Sketch::<4, 3>::from_bytes(&bytes[..n]);
        }
    }
}
