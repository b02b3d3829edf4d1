//! The select stage's novelty (issue 10), on the default manifest and its embedding
//! calibration, with synthetic pooled features (no detector): a frame kept before is a
//! duplicate and never kept for its value, even when surprise makes it novel against the
//! recent stream; a view an earlier run saw (`set_seen_before`) counts as seen; a frame unlike
//! the stream around it is novel by surprise although something like it was kept long ago.

use edgesieve::detect::manifest::Manifest;
use edgesieve::detect::postprocess::Detections;
use edgesieve::select::policy::PolicyConfig;
use edgesieve::select::uncertainty::UncertaintyConfig;
use edgesieve::select::{EmbeddingConfig, Selector};
use edgesieve::util::rng::SplitMix64;
use std::path::Path;

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");

fn selector(policy: PolicyConfig) -> Selector {
    selector_with(policy, &EmbeddingConfig::default())
}

fn selector_with(policy: PolicyConfig, embedding: &EmbeddingConfig) -> Selector {
    let m = Manifest::load(Path::new(MANIFEST)).unwrap();
    Selector::new(&UncertaintyConfig::default(), embedding, &policy, 100, &m)
        .expect("selector for the default manifest (models/fetch builds its calibration)")
}

/// Pooled features: a positive base scene plus seeded noise of `noise` relative size.
fn scene(base: &[f32], noise: f32, rng: &mut SplitMix64) -> Vec<f32> {
    base.iter()
        .map(|&b| (b * (1.0 + noise * (rng.next_gaussian() as f32))).max(0.0))
        .collect()
}

fn base(seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..64).map(|_| 0.05 + rng.next_f64() as f32).collect()
}

fn policy() -> PolicyConfig {
    PolicyConfig {
        target_keep_ratio: 0.5,
        explore_probability: 0.0,
        duplicate_radius: 0.2,
        ..PolicyConfig::default()
    }
}

#[test]
fn a_frame_kept_before_is_a_duplicate_even_when_it_surprises() {
    let mut s = selector(policy());
    let dets = Detections::new();
    let (a, b) = (base(1), base(2));
    let mut rng = SplitMix64::new(3);
    // Scene B once: kept (an empty sketch answers novelty 2).
    let first = s.select(&dets, &b, 0).unwrap();
    assert!(first.decision.keep);
    s.commit_kept(1);
    // A long stretch of scene A, then B exactly again: unlike the recent stream (surprise),
    // but a duplicate of what was kept.
    for i in 1..200u64 {
        let sel = s.select(&dets, &scene(&a, 0.02, &mut rng), i * 33).unwrap();
        if sel.decision.keep {
            s.commit_kept(1);
        }
    }
    let again = s.select(&dets, &b, 200 * 33).unwrap();
    assert!(
        again.decision.scores.novelty > 0.2,
        "surprise makes it novel: {:?}",
        again.decision.scores
    );
    assert!(!again.decision.keep, "kept twice: {:?}", again.decision);
    assert_eq!(again.decision.scores.value, 0.0);
}

#[test]
fn a_view_an_earlier_run_saw_counts_as_seen() {
    let dets = Detections::new();
    let a = base(4);
    let drive = |s: &mut Selector| {
        let mut rng = SplitMix64::new(5);
        let mut kept = 0;
        for i in 0..400u64 {
            let sel = s.select(&dets, &scene(&a, 0.3, &mut rng), i * 33).unwrap();
            if sel.decision.keep {
                s.commit_kept(1);
                kept += 1;
            }
        }
        kept
    };
    let mut first = selector(policy());
    let kept_first = drive(&mut first);
    // The next run starts from what the first kept and saw, as `run` does from the spool.
    let mut second = selector(policy());
    *second.sketch_mut() = first.sketch().clone();
    second.set_seen_before(Box::new(first.seen().clone()));
    let kept_second = drive(&mut second);
    // Without the seen sketch (kept frames only), the same drive keeps again.
    let mut third = selector(policy());
    *third.sketch_mut() = first.sketch().clone();
    let kept_third = drive(&mut third);
    eprintln!(
        "same 400 frames: first {kept_first}, with seen {kept_second}, kept-only {kept_third}"
    );
    assert!(kept_first >= 10, "{kept_first}");
    assert!(
        kept_second * 10 <= kept_first,
        "{kept_second} of {kept_first}"
    );
    assert!(kept_third > kept_second, "{kept_third} vs {kept_second}");
}

#[test]
fn a_rare_sight_between_ordinary_frames_is_novel_by_surprise() {
    // B, then a stretch of A, then a B-like frame: close to the kept B but far from the
    // recent A frames. Its novelty, with and without surprise.
    let novelty_of_b_like = |surprise_weight: f64| {
        let embedding = EmbeddingConfig {
            surprise_weight,
            ..EmbeddingConfig::default()
        };
        let mut s = selector_with(policy(), &embedding);
        let dets = Detections::new();
        let (a, b) = (base(6), base(7));
        let mut rng = SplitMix64::new(8);
        let mut t = 0u64;
        let mut step = |s: &mut Selector, f: &[f32]| {
            t += 33;
            let sel = s.select(&dets, f, t).unwrap();
            if sel.decision.keep {
                s.commit_kept(1);
            }
            sel.decision.scores.novelty
        };
        step(&mut s, &b);
        for _ in 0..100 {
            step(&mut s, &scene(&a, 0.02, &mut rng));
        }
        step(&mut s, &scene(&b, 0.08, &mut rng))
    };
    let (with, without) = (novelty_of_b_like(1.0), novelty_of_b_like(0.0));
    eprintln!("B-like frame after A: novelty {with:.3} with surprise, {without:.3} without");
    assert!(without < 0.4, "{without}: the kept B is near");
    assert!(with > 2.0 * without, "{with} vs {without}");
}
