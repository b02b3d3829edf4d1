//! Selection metrics: distances, coverage, redundancy, the baselines (random, uniform in time,
//! greedy k-centre), detection-error matching and error capture of a ranking. Pure functions
//! on plain vectors, so every figure the eval prints can be checked by hand.

use crate::coco::GtBox;
use edgesieve::detect::postprocess::iou;
use edgesieve::util::rng::SplitMix64;

/// Euclidean distance of two vectors of the same length.
pub fn dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = x - y;
            d * d
        })
        .sum::<f32>()
        .sqrt()
}

/// Distance from every point to its nearest selected point (∞ when nothing is selected).
pub fn nearest_distances(points: &[Vec<f32>], selected: &[usize]) -> Vec<f32> {
    points
        .iter()
        .map(|p| {
            selected
                .iter()
                .map(|&s| dist(p, &points[s]))
                .fold(f32::INFINITY, f32::min)
        })
        .collect()
}

/// How well a selection covers all points: mean and max distance to the nearest selected one.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Coverage {
    pub mean: f64,
    pub max: f64,
}

/// Coverage of `points` by `selected` (lower is better). ∞ for an empty selection.
pub fn coverage(points: &[Vec<f32>], selected: &[usize]) -> Coverage {
    if points.is_empty() {
        return Coverage::default();
    }
    let d = nearest_distances(points, selected);
    Coverage {
        mean: d.iter().map(|&x| x as f64).sum::<f64>() / d.len() as f64,
        max: d.iter().fold(0.0f32, |m, &x| m.max(x)) as f64,
    }
}

/// Farthest-first traversal (Gonzalez): starts at `first`, then repeatedly adds the point
/// farthest from everything selected so far (ties: lowest index). A 2-approximation of the
/// optimal k-centre (minimum max distance), and in practice close to optimal for the mean too.
/// Returns min(k, n) distinct indices.
pub fn greedy_k_centre(points: &[Vec<f32>], k: usize, first: usize) -> Vec<usize> {
    paced_k_centre(points, k, first, |_| usize::MAX)
}

/// Farthest-first traversal restricted to what a selector paced by a running ceiling could
/// pick: at most `ceiling(m)` of the selected points among the first `m` (for every `m` from
/// 1), as the policy's budget allows `target · frames seen + allowance` keeps at any time.
/// Each step adds the farthest point whose addition keeps every prefix within its ceiling
/// (ties: lowest index); it stops early when none does. The reference for what an online
/// selection under that budget could cover (it still sees all frames at once).
pub fn paced_k_centre(
    points: &[Vec<f32>],
    k: usize,
    first: usize,
    ceiling: impl Fn(usize) -> usize,
) -> Vec<usize> {
    let n = points.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    // room[j]: how many more may be selected among the first j + 1 points.
    let mut room: Vec<usize> = (1..=n).map(&ceiling).collect();
    let mut selected = Vec::with_capacity(k);
    let mut taken = vec![false; n];
    let mut nearest = vec![f32::INFINITY; n];
    let mut next = Some(first.min(n - 1)).filter(|&f| room[f..].iter().all(|&r| r > 0));
    while let Some(pick) = next {
        selected.push(pick);
        taken[pick] = true;
        room[pick..].iter_mut().for_each(|r| *r -= 1);
        if selected.len() == k {
            break;
        }
        let c = &points[pick];
        for (i, p) in points.iter().enumerate() {
            let d = dist(p, c);
            if d < nearest[i] {
                nearest[i] = d;
            }
        }
        // From the last point back, so the least room of every prefix from i on is at hand:
        // point i fits while it is above zero (`>=` keeps the lowest index on a tie).
        let mut least = usize::MAX;
        let mut best: Option<(usize, f32)> = None;
        for i in (0..n).rev() {
            least = least.min(room[i]);
            if least > 0 && !taken[i] && best.is_none_or(|(_, bd)| nearest[i] >= bd) {
                best = Some((i, nearest[i]));
            }
        }
        next = best.map(|(i, _)| i);
    }
    selected
}

/// An online selection's best case: the points in stream order, each kept when it lies farther
/// than `radius` from every point kept before it (the first is kept), or when fewer than
/// `floor(m)` of the first `m` points are kept; never so that more than `ceiling(m)` are. What
/// a selector that knew the right radius in advance, but saw no frame ahead, would keep.
pub fn online_cover(
    points: &[Vec<f32>],
    radius: f32,
    ceiling: impl Fn(usize) -> usize,
    floor: impl Fn(usize) -> usize,
) -> Vec<usize> {
    let mut selected: Vec<usize> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let seen = i + 1;
        if selected.len() + 1 > ceiling(seen) {
            continue;
        }
        let behind = selected.len() < floor(seen);
        if behind || selected.iter().all(|&s| dist(p, &points[s]) > radius) {
            selected.push(i);
        }
    }
    selected
}

/// Largest point count [`greedy_k_median`] accepts (it holds the n × n distance matrix).
pub const K_MEDIAN_MAX_POINTS: usize = 8192;

/// Greedy k-median (facility-location greedy): repeatedly adds the point that lowers the MEAN
/// distance to the nearest selected point the most (the first pick is the medoid). The
/// reference for mean coverage, which farthest-first does not optimise (it chases outliers to
/// lower the max). Holds the n × n distance matrix: None above [`K_MEDIAN_MAX_POINTS`].
pub fn greedy_k_median(points: &[Vec<f32>], k: usize) -> Option<Vec<usize>> {
    let n = points.len();
    if n > K_MEDIAN_MAX_POINTS {
        return None;
    }
    let k = k.min(n);
    let mut d = vec![0.0f32; n * n];
    for i in 0..n {
        for j in (i + 1)..n {
            let x = dist(&points[i], &points[j]);
            d[i * n + j] = x;
            d[j * n + i] = x;
        }
    }
    let mut nearest = vec![f32::INFINITY; n];
    let mut taken = vec![false; n];
    let mut selected = Vec::with_capacity(k);
    for _ in 0..k {
        let mut best: Option<(usize, f64)> = None;
        for c in (0..n).filter(|&c| !taken[c]) {
            let row = &d[c * n..(c + 1) * n];
            let total: f64 = row
                .iter()
                .zip(&nearest)
                .map(|(&x, &m)| x.min(m) as f64)
                .sum();
            if best.is_none_or(|(_, b)| total < b) {
                best = Some((c, total));
            }
        }
        let Some((c, _)) = best else { break };
        taken[c] = true;
        selected.push(c);
        for (m, &x) in nearest.iter_mut().zip(&d[c * n..(c + 1) * n]) {
            *m = m.min(x);
        }
    }
    Some(selected)
}

/// Share of selected points that have another selected point closer than `tau` (near-duplicates
/// of each other both count). 0 for fewer than two points.
pub fn redundancy(points: &[Vec<f32>], selected: &[usize], tau: f32) -> f64 {
    if selected.len() < 2 {
        return 0.0;
    }
    let dup = redundant(points, selected, tau)
        .iter()
        .filter(|&&d| d)
        .count();
    dup as f64 / selected.len() as f64
}

/// For each selected point, whether another selected point lies closer than `tau`.
pub fn redundant(points: &[Vec<f32>], selected: &[usize], tau: f32) -> Vec<bool> {
    selected
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            selected
                .iter()
                .enumerate()
                .any(|(j, &b)| i != j && dist(&points[a], &points[b]) < tau)
        })
        .collect()
}

/// Median of the distances between consecutive points of the same group (clip). None when no
/// two consecutive points share a group.
pub fn consecutive_median(points: &[Vec<f32>], group: &[usize]) -> Option<f32> {
    consecutive_median_where(points, group, |_| true)
}

/// Median distance between consecutive points that both belong to group `g`. None when the
/// group has no consecutive pair.
pub fn consecutive_median_of(points: &[Vec<f32>], group: &[usize], g: usize) -> Option<f32> {
    consecutive_median_where(points, group, |gi| gi == g)
}

/// Median distance between consecutive points of the same group, for the groups `keep` takes.
fn consecutive_median_where(
    points: &[Vec<f32>],
    group: &[usize],
    keep: impl Fn(usize) -> bool,
) -> Option<f32> {
    let d: Vec<f32> = (1..points.len().min(group.len()))
        .filter(|&i| group[i] == group[i - 1] && keep(group[i]))
        .map(|i| dist(&points[i], &points[i - 1]))
        .collect();
    median(d)
}

/// Median (mean of the two middle values for an even count). None when empty.
pub fn median(mut v: Vec<f32>) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// k indices evenly spread over 0..n (every n/k-th, centred in its stretch): `floor((i + ½)·n/k)`.
pub fn uniform_selection(n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n);
    (0..k)
        .map(|i| (((i as f64 + 0.5) * n as f64 / k as f64) as usize).min(n - 1))
        .collect()
}

/// k distinct indices of 0..n drawn uniformly (partial Fisher-Yates), sorted.
pub fn random_selection(n: usize, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let k = k.min(n);
    let mut all: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + below(rng, n - i);
        all.swap(i, j);
    }
    all.truncate(k);
    all.sort_unstable();
    all
}

/// Uniform integer in 0..m (m ≥ 1).
fn below(rng: &mut SplitMix64, m: usize) -> usize {
    ((rng.next_f64() * m as f64) as usize).min(m - 1)
}

/// Number of distinct groups (clips) the selection touches.
pub fn groups_covered(selected: &[usize], group: &[usize]) -> usize {
    let mut g: Vec<usize> = selected
        .iter()
        .filter_map(|&s| group.get(s).copied())
        .collect();
    g.sort_unstable();
    g.dedup();
    g.len()
}

/// Mean of `values` over the selection (0 for an empty selection).
pub fn mean_over(values: &[f32], selected: &[usize]) -> f64 {
    if selected.is_empty() {
        return 0.0;
    }
    selected.iter().map(|&s| values[s] as f64).sum::<f64>() / selected.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Detection errors

/// A detection reduced to what matching needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetBox {
    pub class: u16,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// Errors of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameErrors {
    /// Labeled boxes no same-class detection matched.
    pub missed: u32,
    /// Detections of a labeled class that matched no labeled box of their class.
    pub false_boxes: u32,
    pub matched: u32,
}

impl FrameErrors {
    pub fn total(&self) -> u32 {
        self.missed + self.false_boxes
    }
}

/// One-to-one greedy matching, as in VOC/COCO evaluation: detections with score ≥ `score_min`
/// and a class in `labeled` are taken best score first; each matches the unmatched labeled box
/// of its class with the highest IoU, if that IoU is ≥ `iou_min`. Detections of other classes
/// are ignored (the labels say nothing about them).
pub fn count_errors(
    gt: &[GtBox],
    dets: &[DetBox],
    score_min: f32,
    labeled: &[u16],
    iou_min: f32,
) -> FrameErrors {
    let mut order: Vec<&DetBox> = dets
        .iter()
        .filter(|d| d.score >= score_min && labeled.contains(&d.class))
        .collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut used = vec![false; gt.len()];
    let mut e = FrameErrors::default();
    for d in order {
        let mut best: Option<(usize, f32)> = None;
        for (i, g) in gt.iter().enumerate() {
            if used[i] || g.class != d.class {
                continue;
            }
            let o = iou(&d.bbox, &g.bbox);
            if o >= iou_min && best.is_none_or(|(_, bo)| o > bo) {
                best = Some((i, o));
            }
        }
        match best {
            Some((i, _)) => {
                used[i] = true;
                e.matched += 1;
            }
            None => e.false_boxes += 1,
        }
    }
    e.missed = used.iter().filter(|u| !**u).count() as u32;
    e
}

/// Number of frames in the top `frac` of `n`: round(n·frac), at least 1 when n > 0.
pub fn top_count(n: usize, frac: f64) -> usize {
    if n == 0 {
        return 0;
    }
    ((n as f64 * frac).round() as usize).clamp(1, n)
}

/// Share of all errors in the `m` frames ranked highest by `score`. Frames tied at the cut
/// count fractionally (the expectation under a random tie-break), so the figure does not depend
/// on file order. 0 when there are no errors.
pub fn top_share(score: &[f32], errors: &[u32], m: usize) -> f64 {
    let total: u64 = errors.iter().map(|&e| e as u64).sum();
    if total == 0 || m == 0 {
        return 0.0;
    }
    let mut idx: Vec<usize> = (0..score.len().min(errors.len())).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let mut captured = 0.0f64;
    let mut slots = m.min(idx.len());
    let mut i = 0;
    while i < idx.len() && slots > 0 {
        let mut j = i;
        while j < idx.len() && score[idx[j]].total_cmp(&score[idx[i]]).is_eq() {
            j += 1;
        }
        let group = j - i;
        let errs: u64 = idx[i..j].iter().map(|&k| errors[k] as u64).sum();
        let take = group.min(slots);
        captured += errs as f64 * take as f64 / group as f64;
        slots -= take;
        i = j;
    }
    captured / total as f64
}

/// Mean, over `trials` seeded random rankings, of the share of errors in the top `m` frames.
pub fn random_top_share(errors: &[u32], m: usize, trials: usize, seed: u64) -> f64 {
    if trials == 0 {
        return 0.0;
    }
    let mut rng = SplitMix64::new(seed);
    let mut sum = 0.0;
    for _ in 0..trials {
        let pick = random_selection(errors.len(), m, &mut rng);
        let mut score = vec![0.0f32; errors.len()];
        for p in pick {
            score[p] = 1.0;
        }
        sum += top_share(&score, errors, m);
    }
    sum / trials as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f32, f32)]) -> Vec<Vec<f32>> {
        v.iter().map(|&(x, y)| vec![x, y]).collect()
    }

    #[test]
    fn greedy_k_centre_picks_the_far_clusters() {
        // Three tight clusters around (0,0), (10,0), (0,10), plus points in each.
        let p = pts(&[
            (0.0, 0.0),
            (0.1, 0.0),
            (10.0, 0.0),
            (10.0, 0.1),
            (0.0, 10.0),
            (0.1, 10.0),
        ]);
        let s = greedy_k_centre(&p, 3, 0);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], 0);
        let mut clusters: Vec<usize> = s.iter().map(|&i| i / 2).collect();
        clusters.sort_unstable();
        assert_eq!(clusters, vec![0, 1, 2]);
        let c = coverage(&p, &s);
        assert!(c.max <= 0.1 + 1e-6, "{c:?}");
        // k larger than n gives every point once.
        let mut all = greedy_k_centre(&p, 10, 0);
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
        assert!(greedy_k_centre(&p, 0, 0).is_empty());
    }

    #[test]
    fn online_cover_keeps_what_lies_beyond_the_radius_within_ceiling_and_floor() {
        // 0, 0.1, 5, 5.1, 10 on a line: at radius 1 the far points 0, 5 and 10 are kept.
        let p: Vec<Vec<f32>> = [0.0, 0.1, 5.0, 5.1, 10.0]
            .iter()
            .map(|&x| vec![x])
            .collect();
        assert_eq!(online_cover(&p, 1.0, |_| usize::MAX, |_| 0), vec![0, 2, 4]);
        // A ceiling of one keep per two points seen (rounded up) leaves room for each of them.
        assert_eq!(
            online_cover(&p, 1.0, |m| m.div_ceil(2), |_| 0),
            vec![0, 2, 4]
        );
        // One of 1 + m / 4: point 2 is refused (2 kept of 3 seen), so 3, as far from 0, is
        // kept instead, and 4 is refused too (3 of 5).
        assert_eq!(online_cover(&p, 1.0, |m| m / 4 + 1, |_| 0), vec![0, 3]);
        // A floor of every point keeps the near ones too.
        assert_eq!(
            online_cover(&p, 1.0, |_| usize::MAX, |m| m),
            vec![0, 1, 2, 3, 4]
        );
        // Radius 100: only the first, unless the floor asks for more.
        assert_eq!(online_cover(&p, 100.0, |_| usize::MAX, |_| 0), vec![0]);
        assert_eq!(
            online_cover(&p, 100.0, |_| usize::MAX, |m| m / 2),
            vec![0, 3]
        );
    }

    #[test]
    fn paced_k_centre_keeps_every_prefix_within_its_ceiling() {
        // Ten points close together, then two far apart: unpaced, farthest-first from 0 takes
        // both far points; with at most one pick in the first 10 and two in all 12 it may
        // take only one of them, and never a second early point.
        let mut v: Vec<(f32, f32)> = (0..10).map(|i| (i as f32 * 0.01, 0.0)).collect();
        v.extend([(10.0, 0.0), (0.0, 10.0)]);
        let p = pts(&v);
        let free = greedy_k_centre(&p, 3, 0);
        assert_eq!(&free[1..], &[10, 11][..]);
        let ceiling = |m: usize| if m <= 10 { 1 } else { 2 };
        let paced = paced_k_centre(&p, 3, 0, ceiling);
        assert_eq!(paced.len(), 2, "{paced:?}");
        assert_eq!(paced[0], 0);
        assert!(paced[1] >= 10, "{paced:?}");
        for m in 1..=p.len() {
            assert!(paced.iter().filter(|&&i| i < m).count() <= ceiling(m));
        }
        // A first point that does not fit is not taken.
        assert!(paced_k_centre(&p, 3, 0, |_| 0).is_empty());
        assert_eq!(paced_k_centre(&p, 3, 0, |_| usize::MAX), free);
    }

    #[test]
    fn greedy_k_median_minimises_the_mean() {
        // A dense cluster of 6 near 0 and one outlier at 100 (1-d): with k = 1 the medoid is
        // the median point 0.3 (farthest-first from the outlier would stay there); with k = 2
        // it adds the outlier.
        let p: Vec<Vec<f32>> = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 100.0]
            .iter()
            .map(|&x| vec![x])
            .collect();
        assert_eq!(greedy_k_median(&p, 1), Some(vec![3]));
        assert_eq!(greedy_k_median(&p, 2), Some(vec![3, 6]));
        let kc = coverage(&p, &greedy_k_centre(&p, 1, 6));
        let km = coverage(&p, &[3]);
        assert!(km.mean < kc.mean, "{km:?} {kc:?}");
        assert_eq!(greedy_k_median(&p, 10).map(|s| s.len()), Some(7));
        assert_eq!(greedy_k_median(&[], 3), Some(vec![]));
    }

    #[test]
    fn greedy_with_duplicate_points_stays_distinct() {
        let p = pts(&[(1.0, 1.0); 4]);
        let mut s = greedy_k_centre(&p, 3, 2);
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn coverage_mean_and_max() {
        let p = pts(&[(0.0, 0.0), (3.0, 4.0), (6.0, 8.0)]);
        let c = coverage(&p, &[0]);
        assert!((c.mean - 5.0).abs() < 1e-6, "{c:?}");
        assert!((c.max - 10.0).abs() < 1e-6);
        let c = coverage(&p, &[1]);
        assert!((c.mean - 10.0 / 3.0).abs() < 1e-6);
        assert!((c.max - 5.0).abs() < 1e-6);
        assert!(coverage(&p, &[]).mean.is_infinite());
    }

    #[test]
    fn redundancy_counts_both_members_of_a_close_pair() {
        let p = pts(&[(0.0, 0.0), (0.05, 0.0), (5.0, 0.0), (9.0, 0.0)]);
        assert_eq!(redundancy(&p, &[0, 1, 2, 3], 0.1), 0.5);
        assert_eq!(
            redundant(&p, &[0, 1, 2, 3], 0.1),
            vec![true, true, false, false]
        );
        assert_eq!(redundancy(&p, &[0, 2, 3], 0.1), 0.0);
        assert_eq!(redundancy(&p, &[0], 0.1), 0.0);
        // Strictly below tau.
        assert_eq!(redundancy(&p, &[0, 1], 0.05), 0.0);
    }

    #[test]
    fn consecutive_median_stays_within_groups() {
        let p = pts(&[
            (0.0, 0.0),
            (1.0, 0.0),
            (3.0, 0.0),
            (100.0, 0.0),
            (104.0, 0.0),
        ]);
        // Pairs within groups: 1, 2 (group 0), 4 (group 1); the 97 jump crosses groups.
        assert_eq!(consecutive_median(&p, &[0, 0, 0, 1, 1]), Some(2.0));
        assert_eq!(consecutive_median(&p, &[0, 1, 2, 3, 4]), None);
        assert_eq!(consecutive_median_of(&p, &[0, 0, 0, 1, 1], 0), Some(1.5));
        assert_eq!(consecutive_median_of(&p, &[0, 0, 0, 1, 1], 1), Some(4.0));
        assert_eq!(consecutive_median_of(&p, &[0, 1, 0, 1, 1], 0), None);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn uniform_and_random_selections() {
        assert_eq!(uniform_selection(10, 5), vec![1, 3, 5, 7, 9]);
        assert_eq!(uniform_selection(3, 5), vec![0, 1, 2]);
        let u = uniform_selection(2289, 114);
        assert_eq!(u.len(), 114);
        assert!(u.windows(2).all(|w| w[0] < w[1]));
        let mut rng = SplitMix64::new(1);
        let r = random_selection(100, 10, &mut rng);
        assert_eq!(r.len(), 10);
        assert!(r.windows(2).all(|w| w[0] < w[1]) && r[9] < 100);
        let mut rng2 = SplitMix64::new(1);
        assert_eq!(r, random_selection(100, 10, &mut rng2));
        assert_eq!(groups_covered(&[0, 1, 5], &[0, 0, 1, 1, 2, 2]), 2);
        assert!((mean_over(&[1.0, 2.0, 3.0], &[0, 2]) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn error_matching_on_hand_built_boxes() {
        const CAR: u16 = 2;
        const PERSON: u16 = 0;
        const DOG: u16 = 16;
        let gt = [
            GtBox {
                class: CAR,
                bbox: [0.0, 0.0, 10.0, 10.0],
            },
            GtBox {
                class: CAR,
                bbox: [20.0, 0.0, 30.0, 10.0],
            },
            GtBox {
                class: PERSON,
                bbox: [50.0, 0.0, 55.0, 20.0],
            },
        ];
        let dets = [
            // Matches car 0.
            DetBox {
                class: CAR,
                score: 0.9,
                bbox: [0.0, 0.0, 10.0, 9.0],
            },
            // Duplicate on car 0: car 0 is taken, so a false box.
            DetBox {
                class: CAR,
                score: 0.8,
                bbox: [0.0, 0.0, 10.0, 10.0],
            },
            // Right place for the person, wrong class: false box, person missed.
            DetBox {
                class: CAR,
                score: 0.7,
                bbox: [50.0, 0.0, 55.0, 20.0],
            },
            // Below the score threshold: ignored, so car 1 is missed.
            DetBox {
                class: CAR,
                score: 0.2,
                bbox: [20.0, 0.0, 30.0, 10.0],
            },
            // Unlabeled class: ignored.
            DetBox {
                class: DOG,
                score: 0.9,
                bbox: [80.0, 0.0, 90.0, 10.0],
            },
        ];
        let e = count_errors(&gt, &dets, 0.3, &[CAR, PERSON], 0.5);
        assert_eq!(
            e,
            FrameErrors {
                missed: 2,
                false_boxes: 2,
                matched: 1
            }
        );
        assert_eq!(e.total(), 4);
        // IoU just below 0.5 does not match: 10x10 vs 10x4.9 overlap → 0.49.
        let low = [DetBox {
            class: CAR,
            score: 0.9,
            bbox: [0.0, 0.0, 10.0, 4.9],
        }];
        let e = count_errors(&gt[..1], &low, 0.3, &[CAR], 0.5);
        assert_eq!((e.missed, e.false_boxes), (1, 1));
        assert_eq!(
            count_errors(&[], &[], 0.3, &[CAR], 0.5),
            FrameErrors::default()
        );
    }

    #[test]
    fn top_share_with_ties_and_random_baseline() {
        let errors = [5, 0, 3, 2];
        // Ranking 0 > 2 > 3 > 1: top 2 frames hold 8 of 10 errors.
        assert!((top_share(&[0.9, 0.1, 0.8, 0.5], &errors, 2) - 0.8).abs() < 1e-9);
        // All tied: any top 2 hold half the errors on average.
        assert!((top_share(&[0.5; 4], &errors, 2) - 0.5).abs() < 1e-9);
        assert_eq!(top_share(&[0.5; 4], &[0; 4], 2), 0.0);
        assert_eq!(top_count(75, 0.2), 15);
        assert_eq!(top_count(3, 0.01), 1);
        let r = random_top_share(&errors, 2, 2000, 7);
        assert!((r - 0.5).abs() < 0.03, "{r}");
    }
}
