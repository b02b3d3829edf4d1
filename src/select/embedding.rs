//! Frame embedding: turns the detector's pooled feature map (the manifest's `[embedding]
//! tensor`, averaged over the cells that cover the picture, see
//! [`crate::detect::model::Detector::embedding`]) into a short unit vector whose Euclidean
//! distances the [`crate::select::sketch`] compares.
//!
//! Two projectors: [`Projector::from_calibration`], the default when the manifest names an
//! `[embedding] calibration` file — a centre and principal axes learned offline from
//! calibration frames by `models/calibrate_embedding.py` — and [`Projector::new`], a seeded
//! random projection for models without one. Both compute the same formula; only `M` and `μ`
//! differ. [`Projector::space_id`] names the coordinate system, so a sketch saved in another
//! one is recognised and set aside.
//!
//! [`Projector::project`] computes `out = normalise(Mᵀ (normalise(x) − μ))`:
//!
//! 1. L2-normalise the input (computed in f64, so any finite input works; overall brightness or
//!    activation scale of a frame does not matter);
//! 2. optionally subtract a fixed centre `μ` (see below);
//! 3. multiply by a fixed Gaussian random matrix `M` (`in_dim × out_dim`, entries
//!    N(0, 1/out_dim)). By Johnson–Lindenstrauss, distances between the inputs are preserved up
//!    to a factor `1 ± ε` with `ε ≈ sqrt(8·ln(n)/out_dim)` for `n` points — about ±0.3 for 64
//!    dimensions in the worst pair, and much closer on average (the tests measure it);
//! 4. L2-normalise the result into the caller's buffer, so distances lie in `[0, 2]`.
//!
//! A zero input (or one equal to the centre) maps to the zero vector, never NaN. No allocation
//! per frame: the matrix is generated once by [`Projector::new`].
//!
//! `M` is generated from the seed with [`SplitMix64`]: `M[i][j]` is the `(i·out_dim + j)`-th
//! draw of `next_gaussian()` times `1/sqrt(out_dim)`, row-major over the input index. The
//! projector (seed, dimensions, centre) defines the coordinate system of every sketch built
//! from its output: all vehicles whose sketches are merged must use the same one (e.g.
//! [`DEFAULT_SEED`]).
//!
//! # Centring
//!
//! Mean-pooled features after ReLU/SiLU are (almost) all positive, so every frame's feature
//! vector lies in one narrow cone: raw cosine distances are compressed towards 0 and a fixed
//! novelty threshold means little. Subtracting the mean direction μ of normalised features
//! spreads them out. The centre is **fixed** ([`Projector::with_centre`]), not an online EMA: a
//! drifting centre would move the coordinate system under the centres already stored in a sketch
//! (and differ between vehicles, breaking merges). Estimate it once, e.g. on a calibration drive
//! or the first frames of a session, with [`RunningMean`] (which normalises each sample the same
//! way [`Projector::project`] does), then freeze it and ship it with the configuration.

use crate::util::rng::SplitMix64;
use std::fmt;

/// Default output dimension of the embedding.
pub const EMBED_DIM: usize = 64;

/// Default projection seed, shared by the fleet so sketches are comparable and mergeable.
/// (`embedding.seed` in the configuration defaults to it.)
pub const DEFAULT_SEED: u64 = 0x5EED_ED6E;

#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingError {
    /// The input feature vector has the wrong length.
    InputDim { expected: usize, found: usize },
    /// The output buffer has the wrong length.
    OutputDim { expected: usize, found: usize },
    /// The centre given to [`Projector::with_centre`] has the wrong length.
    CentreDim { expected: usize, found: usize },
    /// A NaN or infinite value at `index` of the input (or of the centre).
    NonFinite { index: usize },
}

impl fmt::Display for EmbeddingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbeddingError::InputDim { expected, found } => write!(
                f,
                "embedding input dimension mismatch: expected {expected} values, found {found}"
            ),
            EmbeddingError::OutputDim { expected, found } => write!(
                f,
                "embedding output dimension mismatch: expected {expected} values, found {found}"
            ),
            EmbeddingError::CentreDim { expected, found } => write!(
                f,
                "embedding centre dimension mismatch: expected {expected} values, found {found}"
            ),
            EmbeddingError::NonFinite { index } => {
                write!(f, "embedding input value {index} is not finite")
            }
        }
    }
}

impl std::error::Error for EmbeddingError {}

/// Seeded Gaussian random projection with optional fixed centring; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Projector {
    in_dim: usize,
    out_dim: usize,
    /// Row-major `in_dim × out_dim`: row `i` is what input `i` adds to the output.
    matrix: Vec<f32>,
    centre: Option<Vec<f32>>,
}

impl Projector {
    /// Generates the `in_dim × out_dim` matrix from `seed` (entries N(0, 1/out_dim)).
    pub fn new(in_dim: usize, out_dim: usize, seed: u64) -> Self {
        let scale = if out_dim == 0 {
            0.0
        } else {
            1.0 / (out_dim as f64).sqrt()
        };
        let mut rng = SplitMix64::new(seed);
        let matrix = (0..in_dim * out_dim)
            .map(|_| (rng.next_gaussian() * scale) as f32)
            .collect();
        Projector {
            in_dim,
            out_dim,
            matrix,
            centre: None,
        }
    }

    /// Subtracts the fixed centre `mean` (the mean of L2-normalised features, e.g. from
    /// [`RunningMean::mean`]) after normalising each input.
    pub fn with_centre(mut self, mean: Vec<f32>) -> Result<Self, EmbeddingError> {
        if mean.len() != self.in_dim {
            return Err(EmbeddingError::CentreDim {
                expected: self.in_dim,
                found: mean.len(),
            });
        }
        if let Some(index) = mean.iter().position(|v| !v.is_finite()) {
            return Err(EmbeddingError::NonFinite { index });
        }
        self.centre = Some(mean);
        Ok(self)
    }

    /// Identifies the coordinate system of the embeddings this projector makes (its
    /// dimensions, matrix and centre; FNV-1a, 64 bits): a sketch saved in one space is
    /// meaningless in another, e.g. after a model or calibration change.
    pub fn space_id(&self) -> u64 {
        const PRIME: u64 = 0x0000_0100_0000_01B3;
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(PRIME);
            }
        };
        eat(&(self.in_dim as u64).to_le_bytes());
        eat(&(self.out_dim as u64).to_le_bytes());
        for v in self.matrix.iter().chain(self.centre.iter().flatten()) {
            eat(&v.to_le_bytes());
        }
        h
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    pub fn centre(&self) -> Option<&[f32]> {
        self.centre.as_deref()
    }

    /// Writes the unit-norm embedding of `input` into `out` (`out_dim` values; a
    /// `&mut [f32; EMBED_DIM]` works). A zero input gives a zero output. No allocation.
    pub fn project(&self, input: &[f32], out: &mut [f32]) -> Result<(), EmbeddingError> {
        if input.len() != self.in_dim {
            return Err(EmbeddingError::InputDim {
                expected: self.in_dim,
                found: input.len(),
            });
        }
        if out.len() != self.out_dim {
            return Err(EmbeddingError::OutputDim {
                expected: self.out_dim,
                found: out.len(),
            });
        }
        if let Some(index) = input.iter().position(|v| !v.is_finite()) {
            return Err(EmbeddingError::NonFinite { index });
        }
        out.fill(0.0);
        let norm = l2_norm(input);
        if norm == 0.0 || self.out_dim == 0 {
            return Ok(());
        }
        let inv = 1.0 / norm;
        for (i, (&x, row)) in input
            .iter()
            .zip(self.matrix.chunks_exact(self.out_dim))
            .enumerate()
        {
            let mut c = (f64::from(x) * inv) as f32;
            if let Some(mean) = &self.centre {
                c -= mean[i];
            }
            if c != 0.0 {
                for (o, &m) in out.iter_mut().zip(row) {
                    *o += c * m;
                }
            }
        }
        let n = l2_norm(out);
        if n > 0.0 && n.is_finite() {
            let inv = (1.0 / n) as f32;
            out.iter_mut().for_each(|o| *o *= inv);
        } else {
            out.fill(0.0);
        }
        Ok(())
    }
}

/// The calibration file of [`Projector::from_calibration`] (written by
/// `models/calibrate_embedding.py`).
#[derive(Debug, serde::Deserialize)]
struct CalibrationFile {
    tensor: String,
    in_dim: usize,
    out_dim: usize,
    mean: Vec<f32>,
    /// `out_dim` rows of `in_dim` values: the principal axes.
    components: Vec<Vec<f32>>,
}

/// Why an embedding calibration file could not be used.
#[derive(Debug)]
pub enum CalibrationError {
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    Parse {
        path: std::path::PathBuf,
        source: toml::de::Error,
    },
    /// Parsed, but it does not fit the model or is not a valid transform.
    Invalid {
        path: std::path::PathBuf,
        problem: String,
    },
}

impl fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalibrationError::Read { path, .. } => write!(
                f,
                "cannot read the embedding calibration {} (models/fetch builds it)",
                path.display()
            ),
            CalibrationError::Parse { path, .. } => write!(
                f,
                "embedding calibration {} is not valid (rebuild it with models/fetch)",
                path.display()
            ),
            CalibrationError::Invalid { path, problem } => write!(
                f,
                "embedding calibration {}: {problem} (rebuild it with models/fetch)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CalibrationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CalibrationError::Read { source, .. } => Some(source),
            CalibrationError::Parse { source, .. } => Some(source),
            CalibrationError::Invalid { .. } => None,
        }
    }
}

impl Projector {
    /// The learned transform of a calibration file: centre = its `mean`, matrix = its
    /// `components` (principal axes) instead of the random projection. `tensor` and `in_dim` are
    /// the manifest's embedding tensor and channel count, `out_dim` the embedding dimension;
    /// a file for another tensor or shape, or with a non-finite value, is refused.
    pub fn from_calibration(
        path: &std::path::Path,
        tensor: &str,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<Projector, CalibrationError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: CalibrationFile =
            toml::from_str(&text).map_err(|source| CalibrationError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let invalid = |problem: String| CalibrationError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        if file.tensor != tensor {
            return Err(invalid(format!(
                "made for tensor \"{}\", the manifest names \"{tensor}\"",
                file.tensor
            )));
        }
        if file.in_dim != in_dim || file.out_dim != out_dim {
            return Err(invalid(format!(
                "made for {} -> {} dimensions, this build needs {in_dim} -> {out_dim}",
                file.in_dim, file.out_dim
            )));
        }
        if file.mean.len() != in_dim
            || file.components.len() != out_dim
            || file.components.iter().any(|r| r.len() != in_dim)
        {
            return Err(invalid(format!(
                "mean or components do not have the declared {out_dim} x {in_dim} shape"
            )));
        }
        if file
            .mean
            .iter()
            .chain(file.components.iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err(invalid("a value is not finite".into()));
        }
        // Row-major `in_dim × out_dim`: row `i` is what input `i` adds to each output.
        let mut matrix = vec![0.0f32; in_dim * out_dim];
        for (j, axis) in file.components.iter().enumerate() {
            for (i, &v) in axis.iter().enumerate() {
                matrix[i * out_dim + j] = v;
            }
        }
        Ok(Projector {
            in_dim,
            out_dim,
            matrix,
            centre: Some(file.mean),
        })
    }
}

/// Running mean of L2-normalised feature vectors, to estimate the centre for
/// [`Projector::with_centre`] (zero vectors are skipped).
#[derive(Debug, Clone, PartialEq)]
pub struct RunningMean {
    sum: Vec<f64>,
    count: u64,
}

impl RunningMean {
    pub fn new(dim: usize) -> Self {
        RunningMean {
            sum: vec![0.0; dim],
            count: 0,
        }
    }

    pub fn update(&mut self, x: &[f32]) -> Result<(), EmbeddingError> {
        if x.len() != self.sum.len() {
            return Err(EmbeddingError::InputDim {
                expected: self.sum.len(),
                found: x.len(),
            });
        }
        if let Some(index) = x.iter().position(|v| !v.is_finite()) {
            return Err(EmbeddingError::NonFinite { index });
        }
        let norm = l2_norm(x);
        if norm > 0.0 {
            for (s, &v) in self.sum.iter_mut().zip(x) {
                *s += f64::from(v) / norm;
            }
            self.count += 1;
        }
        Ok(())
    }

    /// Number of (non-zero) samples seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean so far (zeros before any sample).
    pub fn mean(&self) -> Vec<f32> {
        let n = self.count.max(1) as f64;
        self.sum.iter().map(|s| (s / n) as f32).collect()
    }
}

/// Euclidean norm accumulated in f64 (no overflow or underflow for finite f32 input).
fn l2_norm(x: &[f32]) -> f64 {
    x.iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN: usize = 256;

    fn gaussian_vec(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.next_gaussian() as f32).collect()
    }

    fn unit(x: &[f32]) -> Vec<f32> {
        let n = l2_norm(x) as f32;
        x.iter().map(|v| v / n).collect()
    }

    fn dist(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    }

    fn embed(p: &Projector, x: &[f32]) -> [f32; EMBED_DIM] {
        let mut out = [0.0; EMBED_DIM];
        p.project(x, &mut out).unwrap();
        out
    }

    #[test]
    fn deterministic_from_seed() {
        let a = Projector::new(IN, EMBED_DIM, 42);
        let b = Projector::new(IN, EMBED_DIM, 42);
        let c = Projector::new(IN, EMBED_DIM, 43);
        assert_eq!(a, b);
        assert_ne!(a.matrix, c.matrix);
        let x = gaussian_vec(&mut SplitMix64::new(1), IN);
        assert_eq!(embed(&a, &x), embed(&b, &x));
        assert_ne!(embed(&a, &x), embed(&c, &x));
        // Entries are N(0, 1/out_dim).
        let n = a.matrix.len() as f64;
        let mean = a.matrix.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = a
            .matrix
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.005, "{mean}");
        assert!((var * EMBED_DIM as f64 - 1.0).abs() < 0.03, "{var}");
    }

    #[test]
    fn output_has_unit_norm_and_ignores_input_scale() {
        let p = Projector::new(IN, EMBED_DIM, DEFAULT_SEED);
        let mut rng = SplitMix64::new(2);
        for _ in 0..20 {
            let x = gaussian_vec(&mut rng, IN);
            let e = embed(&p, &x);
            assert!((l2_norm(&e) - 1.0).abs() < 1e-5);
            let big: Vec<f32> = x.iter().map(|v| v * 1e30).collect();
            let tiny: Vec<f32> = x.iter().map(|v| v * 1e-40).collect();
            for y in [big, tiny] {
                let f = embed(&p, &y);
                assert!(dist(&e, &f) < 1e-4, "{}", dist(&e, &f));
            }
        }
    }

    #[test]
    fn zero_vector_maps_to_zero() {
        let p = Projector::new(IN, EMBED_DIM, DEFAULT_SEED);
        let mut out = [1.0; EMBED_DIM];
        p.project(&[0.0; IN], &mut out).unwrap();
        assert_eq!(out, [0.0; EMBED_DIM]);
        // Equal to the centre direction: also zero, not NaN.
        let x = vec![0.5f32; IN];
        let centred = p.clone().with_centre(unit(&x)).unwrap();
        centred.project(&x, &mut out).unwrap();
        assert!(out.iter().all(|v| v.is_finite()));
        assert!(l2_norm(&out) < 1e-3 || (l2_norm(&out) - 1.0).abs() < 1e-5);
        centred.project(&[0.0; IN], &mut out).unwrap();
        assert_eq!(out, [0.0; EMBED_DIM]);
    }

    #[test]
    fn dimension_mismatch_and_non_finite_are_typed_errors() {
        let p = Projector::new(IN, EMBED_DIM, DEFAULT_SEED);
        let mut out = [0.0; EMBED_DIM];
        let e = p.project(&[1.0; 255], &mut out).unwrap_err();
        assert_eq!(
            e,
            EmbeddingError::InputDim {
                expected: 256,
                found: 255
            }
        );
        assert_eq!(
            e.to_string(),
            "embedding input dimension mismatch: expected 256 values, found 255"
        );
        let mut small = [0.0; 32];
        assert_eq!(
            p.project(&[1.0; IN], &mut small),
            Err(EmbeddingError::OutputDim {
                expected: 64,
                found: 32
            })
        );
        let mut x = vec![1.0; IN];
        x[7] = f32::NAN;
        assert_eq!(
            p.project(&x, &mut out),
            Err(EmbeddingError::NonFinite { index: 7 })
        );
        assert_eq!(
            p.clone().with_centre(vec![0.0; 10]),
            Err(EmbeddingError::CentreDim {
                expected: 256,
                found: 10
            })
        );
    }

    /// Johnson–Lindenstrauss: distances between unit inputs survive the projection.
    #[test]
    fn distances_are_approximately_preserved() {
        let p = Projector::new(IN, EMBED_DIM, DEFAULT_SEED);
        let mut rng = SplitMix64::new(3);
        // Independent vectors (distance ≈ √2) and perturbed copies (small distances).
        let mut xs: Vec<Vec<f32>> = Vec::new();
        for _ in 0..15 {
            let base = gaussian_vec(&mut rng, IN);
            for scale in [0.0f32, 0.2, 0.5] {
                let noise = gaussian_vec(&mut rng, IN);
                xs.push(
                    base.iter()
                        .zip(&noise)
                        .map(|(b, n)| b + scale * n)
                        .collect(),
                );
            }
        }
        let units: Vec<Vec<f32>> = xs.iter().map(|x| unit(x)).collect();
        let embs: Vec<[f32; EMBED_DIM]> = xs.iter().map(|x| embed(&p, x)).collect();
        let (mut worst, mut sum_rel, mut pairs) = (0.0f32, 0.0f32, 0);
        for i in 0..xs.len() {
            for j in i + 1..xs.len() {
                let d_in = dist(&units[i], &units[j]);
                let d_out = dist(&embs[i], &embs[j]);
                let rel = (d_out / d_in - 1.0).abs();
                worst = worst.max(rel);
                sum_rel += rel;
                pairs += 1;
            }
        }
        let mean_rel = sum_rel / pairs as f32;
        eprintln!("JL 256->64 over {pairs} pairs: mean |ratio-1| {mean_rel:.3}, worst {worst:.3}");
        assert!(mean_rel < 0.12, "mean relative error {mean_rel}");
        assert!(worst < 0.45, "worst relative error {worst}");
    }

    /// All-positive features: centring spreads the compressed distances out.
    #[test]
    fn centring_spreads_positive_features() {
        let p = Projector::new(IN, EMBED_DIM, DEFAULT_SEED);
        let mut rng = SplitMix64::new(4);
        let common: Vec<f32> = (0..IN).map(|_| 1.0 + rng.next_f64() as f32).collect();
        let frames: Vec<Vec<f32>> = (0..40)
            .map(|_| {
                common
                    .iter()
                    .map(|c| (c + 0.3 * rng.next_gaussian() as f32).max(0.0))
                    .collect()
            })
            .collect();
        let mut mean = RunningMean::new(IN);
        for f in &frames {
            mean.update(f).unwrap();
        }
        assert_eq!(mean.count(), 40);
        let centred = p.clone().with_centre(mean.mean()).unwrap();
        assert_eq!(centred.centre().map(<[f32]>::len), Some(IN));
        let avg = |p: &Projector| {
            let e: Vec<_> = frames.iter().map(|f| embed(p, f)).collect();
            let mut s = 0.0;
            for i in 1..e.len() {
                s += dist(&e[0], &e[i]);
            }
            s / (e.len() - 1) as f32
        };
        let (raw, cen) = (avg(&p), avg(&centred));
        eprintln!("mean distance raw {raw:.3}, centred {cen:.3}");
        assert!(raw < 0.5, "{raw}");
        assert!(cen > 1.0, "{cen}");
        assert!(RunningMean::new(3).update(&[1.0]).is_err());
    }
}
