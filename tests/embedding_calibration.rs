//! The frame embedding's calibration (issue 10): `models/calibrate_embedding.py` learns the
//! centre and axes from onnxruntime's feature maps, pooled in numpy; the device pools tract's
//! map in Rust. Both must pool the same cells, or the learned centre is off. The file records
//! the pooled vectors of a few calibration frames (a 16:9 drive frame, a 1242x375 KITTI frame);
//! tract must give the same vectors, at both precisions (the tensor lies ahead of every
//! quantized node). A calibration file that does not fit is refused naming the file.

use edgesieve::detect::manifest::{Manifest, Precision};
use edgesieve::detect::model::{Detector, DetectorOptions};
use edgesieve::detect::postprocess::Detections;
use edgesieve::select::embedding::{Projector, EMBED_DIM};
use edgesieve::source::{self, Frame};
use std::path::Path;

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data");

#[derive(serde::Deserialize)]
struct Check {
    frame: String,
    pooled: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct File {
    check: Vec<Check>,
}

fn calibration_path(m: &Manifest) -> std::path::PathBuf {
    let spec = m.embedding.as_ref().expect("[embedding]");
    let path = m.dir.join(spec.calibration.as_ref().expect("calibration"));
    assert!(
        path.is_file(),
        "{} is missing: run models/fetch",
        path.display()
    );
    path
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn tract_pools_the_same_cells_as_the_calibration() {
    let m = Manifest::load(Path::new(MANIFEST)).unwrap();
    let text = std::fs::read_to_string(calibration_path(&m)).unwrap();
    let file: File = toml::from_str(&text).unwrap();
    assert!(file.check.len() >= 3, "the file records its check frames");
    for precision in [Precision::Fp32, Precision::Int8] {
        for check in &file.check {
            let path = format!("{DATA}/{}", check.frame);
            let mut src = source::open(&path).unwrap();
            // Shaped for the frame, as `run` shapes it and the calibration did.
            let options = DetectorOptions {
                precision,
                fit_frame: src.frame_size(),
                ..DetectorOptions::default()
            };
            let mut detector = Detector::load(m.clone(), &options).expect("model loads");
            let mut frame = Frame::new();
            src.next_frame(&mut frame).unwrap().unwrap();
            detector
                .detect(
                    &frame.rgb,
                    frame.width,
                    frame.height,
                    &mut Detections::new(),
                )
                .unwrap();
            let pooled = detector.embedding().unwrap();
            let c = cosine(pooled, &check.pooled);
            eprintln!("{precision:?} {}: cosine {c:.6}", check.frame);
            // Same cells, two runtimes, JPEG decoders and resize filters (measured: >= 0.9994
            // fp32, >= 0.9990 int8): nearly equal. Pooling the padding too gives 0.953 on
            // the KITTI frame.
            assert!(c > 0.998, "{precision:?} {}: cosine {c}", check.frame);
        }
    }
}

#[test]
fn a_calibration_that_does_not_fit_is_refused_naming_the_file() {
    let m = Manifest::load(Path::new(MANIFEST)).unwrap();
    let path = calibration_path(&m);
    let spec = m.embedding.as_ref().unwrap();
    let p = Projector::from_calibration(&path, &spec.tensor, spec.channels, EMBED_DIM).unwrap();
    assert_eq!(p.centre().map(<[f32]>::len), Some(spec.channels));
    let e = Projector::from_calibration(&path, "1024", spec.channels, EMBED_DIM).unwrap_err();
    assert!(e.to_string().contains(path.to_str().unwrap()), "{e}");
    assert!(e.to_string().contains("\"956\""), "{e}");
    let e = Projector::from_calibration(&path, &spec.tensor, 256, EMBED_DIM).unwrap_err();
    assert!(e.to_string().contains("256"), "{e}");
    let missing = Path::new("/nonexistent/x.embed.toml");
    let e =
        Projector::from_calibration(missing, &spec.tensor, spec.channels, EMBED_DIM).unwrap_err();
    assert!(e.to_string().contains("models/fetch"), "{e}");
    let dir = std::env::temp_dir().join(format!("edgesieve-calib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text_with_nan(&path)).unwrap();
    let e = Projector::from_calibration(&bad, &spec.tensor, spec.channels, EMBED_DIM).unwrap_err();
    assert!(e.to_string().contains("not finite"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The calibration text with its first mean value replaced by nan.
fn text_with_nan(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let at = text.find("mean = [").unwrap() + "mean = [".len();
    let end = at + text[at..].find(',').unwrap();
    format!("{}nan{}", &text[..at], &text[end..])
}
