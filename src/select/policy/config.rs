//! The `[policy]` section: target keep ratio, value weights, exploration, triggers, rare-class
//! balance and hard caps, with their checks.

use serde::{Deserialize, Serialize};

use crate::config::KeyError;

/// `[[policy.triggers]]`: keep any frame with at least `min_count` confident detections of
/// `class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Class name, as in the model manifest.
    pub class: String,
    #[serde(default = "default_min_count")]
    pub min_count: u32,
}

fn default_min_count() -> u32 {
    1
}

/// `[policy]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Target fraction of frames kept, in (0, 1]. Met by the adaptive threshold.
    pub target_keep_ratio: f64,
    /// Weight `a` of uncertainty in `value = u'^a · n'^(1-a)`, in [0, 1].
    pub uncertainty_weight: f64,
    /// Floor `f` of the uncertainty term, `u' = f + (1 - f)·u`, in [0, 1]: how much a novel
    /// frame the model is sure about is still worth.
    pub uncertainty_floor: f64,
    /// Duplicate radius: a frame whose embedding lies within this distance of a kept frame
    /// (the novelty sketch, with what earlier runs on the spool kept) or of a view an earlier
    /// run saw (`seen.bin`) is never kept for its value nor by exploration; triggers still may. In embedding units (unit vectors, distances
    /// in [0, 2]); 0 switches the rule off. See the policy docs for its calibration.
    pub duplicate_radius: f64,
    /// A frame that looks like one of the last 64 kept frames (the 99th percentile of the
    /// changes of its 32x18 luma grid, 0-255 luma units, below this) is a near-duplicate too,
    /// however far the detector's features drifted (see [`crate::select::look`]). 0 switches
    /// the rule off; at most 255.
    pub look_radius: f64,
    /// The look rule holds for at most this long after a keep, in ms of stream time (0: for as
    /// long as the view stays): a view that stays the same for longer is judged by the
    /// embedding and the duplicate radius again, so a long still scene whose features wander
    /// gets a frame every few seconds while the budget lasts, not one for ever.
    pub look_hold_ms: u64,
    /// How much unspent budget is banked, in frames of stream: a stretch with nothing worth
    /// keeping (monotonous, or a drive already seen) saves up to `target_keep_ratio ·
    /// bank_frames` keeps for the novel stretch that follows. The budget stays a ceiling: kept
    /// frames never exceed `target_keep_ratio · frames seen` by more than four.
    pub bank_frames: u64,
    /// Horizon (frames) of the running mean that novelty is divided by (`n' = novelty /
    /// running mean`), ≥ 1. Shorter: a stretch whose embedding jitters (high novelty
    /// throughout) stops outranking the stretches after it sooner; longer: a scene change keeps
    /// its contrast against the stretch before it for longer.
    pub novelty_horizon: u64,
    /// Per-frame probability of keeping a frame at random, in [0, 1]. Comes out of the same
    /// budget as value keeps, so keep it well below `target_keep_ratio`.
    pub explore_probability: f64,
    pub triggers: Vec<TriggerConfig>,
    /// A class whose share among kept frames is below this is rare, in [0, 1].
    pub rare_class_share: f64,
    /// Value multiplier for frames with a rare class, ≥ 1.
    pub rare_class_boost: f64,
    /// Kept frames before class shares are trusted (no boost before).
    pub rare_class_warmup: u64,
    /// Hard caps on kept frames per sliding minute / hour / day of stream time; 0 = none.
    pub max_per_minute: u64,
    pub max_per_hour: u64,
    pub max_per_day: u64,
    /// Bytes committed per sliding day; 0 = none.
    pub max_bytes_per_day: u64,
    /// Seed of the exploration and tie-break draws.
    pub seed: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            target_keep_ratio: 0.01,
            // Chosen on the eval's replays (edgesieve-eval; README "Evaluation"): lower weights
            // keep more of the rare night/rain frames spliced into a day drive but let easy
            // frames crowd out hard ones; 0.25 / 0.35 keeps ~3/4 of them at a 5% budget while
            // the kept frames stay far more uncertain than random ones.
            uncertainty_weight: 0.25,
            uncertainty_floor: 0.35,
            // Calibrated with edgesieve-eval (README "Evaluation"): the median embedding
            // distance between tmo324 frames 1/3 s apart within a clip (0.15 at 1/15 s, 0.45
            // at 3 s, 1.43 between clips); larger radii lose rare frames that resemble each
            // other (the spliced night frames are 0.26-0.57 apart).
            duplicate_radius: 0.2,
            // edgesieve-eval part 1 (fp32, 5%): redundancy among kept frames (gradient
            // descriptor) 9.6% at 0 (off), 4.0% at 30, 0.0% at 35 (the rain clip: 22 kept -> 4),
            // rare-frame recall 11/12 at 0 and 35; the embedding's mean coverage 0.96x -> 1.05x
            // random (it sees the rain clip's wandering features as new ground). Consecutive
            // frames of the sample drives change by 3.7 (rain) to 29 (city); 50 frames apart
            // by 22 (rain) to 97 (city).
            look_radius: 35.0,
            // edgesieve-eval part 1 (fp32, 5%): mean coverage vs random, embedding /
            // descriptor, 1.030x / 0.994x at 0 (for ever), 0.958x / 0.975x at 4 s, 0.971x /
            // 0.973x at 6 s, 0.996x / 0.991x at 7 s; rain clip 4 -> 10 / 8 / 7 kept; redundancy
            // 0.0% and the second pass 0 frames throughout; max coverage vs k-centre 1.62x ->
            // 1.71x / 1.67x / 1.66x (the kept frames it adds improve the k-centre reference of
            // the same size; the farthest frame, in the viaduct clip, stays where it was).
            look_hold_ms: 6_000,
            // 10 minutes at 15 fps.
            bank_frames: 9000,
            novelty_horizon: 256,
            explore_probability: 0.001,
            triggers: Vec::new(),
            rare_class_share: 0.02,
            rare_class_boost: 1.5,
            rare_class_warmup: 50,
            max_per_minute: 0,
            max_per_hour: 0,
            max_per_day: 0,
            max_bytes_per_day: 0,
            seed: 0x5EED_ED6E_5137_E000,
        }
    }
}

/// A configuration the policy cannot run with. Keys are relative to `[policy]` (the config
/// loader prefixes `policy.`), e.g. `target_keep_ratio must be in (0, 1], got 0`.
pub(super) fn invalid(key: &str, message: impl Into<String>) -> KeyError {
    KeyError::new(key, message)
}

fn in_unit(key: &str, v: f64) -> Result<(), KeyError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, format!("must be in [0, 1], got {v}")))
    }
}

impl PolicyConfig {
    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<(), KeyError> {
        let r = self.target_keep_ratio;
        if !(r > 0.0 && r <= 1.0) {
            return Err(invalid(
                "target_keep_ratio",
                format!("must be in (0, 1], got {r}"),
            ));
        }
        in_unit("uncertainty_weight", self.uncertainty_weight)?;
        in_unit("uncertainty_floor", self.uncertainty_floor)?;
        in_unit("explore_probability", self.explore_probability)?;
        let d = self.duplicate_radius;
        if !(0.0..=2.0).contains(&d) {
            return Err(invalid(
                "duplicate_radius",
                format!("must be in [0, 2] (distances between unit vectors), got {d}"),
            ));
        }
        let l = self.look_radius;
        if !(0.0..=255.0).contains(&l) {
            return Err(invalid(
                "look_radius",
                format!("must be in [0, 255] (luma units), got {l}"),
            ));
        }
        if self.novelty_horizon == 0 {
            return Err(invalid("novelty_horizon", "must be >= 1"));
        }
        in_unit("rare_class_share", self.rare_class_share)?;
        let b = self.rare_class_boost;
        if !(b.is_finite() && b >= 1.0) {
            return Err(invalid(
                "rare_class_boost",
                format!("must be finite and >= 1, got {b}"),
            ));
        }
        for (i, t) in self.triggers.iter().enumerate() {
            if t.min_count == 0 {
                return Err(invalid(&format!("triggers[{i}].min_count"), "must be >= 1"));
            }
        }
        Ok(())
    }
}
