//! The NNEF form of the detector (issue 11, "a lean device runtime"): converted from the
//! manifest's ONNX files (`edgesieve convert`, here into a temporary folder so the test does not
//! depend on models/fetch having run), it must give the same detections and embedding as the
//! ONNX file on real frames, at both precisions and for two input shapes from one file (the
//! symbolic height and width bound at load: 416x256 for the 16:9 frames, the square 416x416).
//! A file that does not fit its manifest is refused as an ONNX file is.

use edgesieve::detect::manifest::{Manifest, Precision};
use edgesieve::detect::model::{Detector, DetectorError, DetectorOptions};
use edgesieve::detect::nnef;
use edgesieve::detect::postprocess::Detections;
use edgesieve::source::{self, Frame};
use std::path::{Path, PathBuf};

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");
const FRAMES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/drive-tmo324-lane-detecting/frames"
);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgesieve-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every 200th frame of the drive (12 frames): the first and last frames and a spread between.
fn frames() -> Vec<Frame> {
    let mut names: Vec<_> = std::fs::read_dir(FRAMES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    names.sort();
    let picked: Vec<String> = names
        .iter()
        .step_by(200)
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    assert!(picked.len() >= 8, "{FRAMES}: too few frames");
    let mut src = source::open(&picked.join(",")).unwrap();
    let mut out = vec![];
    loop {
        let mut frame = Frame::new();
        match src.next_frame(&mut frame) {
            Some(r) => r.unwrap(),
            None => break,
        }
        out.push(frame);
    }
    out
}

/// One frame's detections (class, score, box) and embedding.
type FrameResult = (Vec<(u16, f32, [f32; 4])>, Vec<f32>);

/// Detections and embedding of every frame.
fn run(
    m: &Manifest,
    file: &Path,
    precision: Precision,
    fit: Option<(u32, u32)>,
    frames: &[Frame],
) -> Vec<FrameResult> {
    let options = DetectorOptions {
        precision,
        model_file: Some(file.to_path_buf()),
        fit_frame: fit,
        ..DetectorOptions::default()
    };
    let mut detector = Detector::load(m.clone(), &options).expect("model loads");
    let mut dets = Detections::new();
    frames
        .iter()
        .map(|f| {
            detector
                .detect(&f.rgb, f.width, f.height, &mut dets)
                .unwrap();
            let boxes = dets
                .items()
                .iter()
                .map(|d| (d.class_id, d.score, d.bbox))
                .collect();
            (boxes, detector.embedding().unwrap().to_vec())
        })
        .collect()
}

/// Asserts that two runs over the same frames found the same detections (class; score within
/// 1e-4; box within 0.01 px) and embeddings (within `embedding_tol`); returns how many
/// detections were compared. `what` names the runs in a failure.
fn assert_same(a: &[FrameResult], b: &[FrameResult], embedding_tol: f32, what: &str) -> usize {
    assert_eq!(a.len(), b.len(), "{what}: frames");
    let mut total = 0;
    for (i, ((da, ea), (db, eb))) in a.iter().zip(b).enumerate() {
        assert_eq!(da.len(), db.len(), "{what} frame {i}");
        for (x, y) in da.iter().zip(db) {
            assert_eq!(x.0, y.0, "{what} frame {i}");
            assert!((x.1 - y.1).abs() < 1e-4, "{what} frame {i}: {x:?} {y:?}");
            for k in 0..4 {
                assert!(
                    (x.2[k] - y.2[k]).abs() < 1e-2,
                    "{what} frame {i}: {x:?} {y:?}"
                );
            }
        }
        let diff = ea
            .iter()
            .zip(eb)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(diff < embedding_tol, "{what} frame {i}: embedding {diff}");
        total += da.len();
    }
    total
}

#[test]
fn nnef_gives_the_detections_of_onnx_at_both_precisions_and_shapes() {
    let m = Manifest::load(Path::new(MANIFEST)).unwrap();
    let dir = temp_dir("nnef-parity");
    let frames = frames();
    let size = (frames[0].width, frames[0].height);
    let mut total = 0;
    for precision in [Precision::Fp32, Precision::Int8] {
        let onnx = m.model_path(precision).unwrap();
        let converted = dir.join(format!("{precision}.nnef.tar"));
        nnef::convert(&m, &onnx, &converted, precision).expect("converts");
        // Einsums are written as tract's einsum, not NNEF matmuls between reshapes, which tract
        // declutters back at every load (detect::optimise); the layout says so (models/fetch).
        let text = String::from_utf8_lossy(&std::fs::read(&converted).unwrap()).into_owned();
        assert!(text.contains("tract_core_einsum"), "{precision}");
        assert!(!text.contains(" = matmul("), "{precision}");
        assert!(
            text.contains(&format!(
                "(\"{}\", \"{}\")",
                nnef::LAYOUT_PROPERTY,
                nnef::LAYOUT
            )),
            "{precision}"
        );
        for fit in [Some(size), None] {
            let a = run(&m, &onnx, precision, fit, &frames);
            let b = run(&m, &converted, precision, fit, &frames);
            // The same ops on the same weights: equal up to float summation order.
            total += assert_same(&a, &b, 1e-4, &format!("{precision} {fit:?}"));
        }
    }
    assert!(total > 50, "the frames have boxes to compare ({total})");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The f16 file (`convert --precision f16`: the fp32 model translated to half precision when it
/// is written, not at every start) is marked as such and computes what the fp32 file translated
/// at load computes: the same ops on the same f16 weights. It runs as f16 only.
#[test]
fn the_f16_file_computes_what_f16_computes_from_the_fp32_file() {
    let m = Manifest::load(Path::new(MANIFEST)).unwrap();
    let dir = temp_dir("nnef-f16");
    let onnx = m.model_path(Precision::Fp32).unwrap();
    let (fp32, half) = (dir.join("fp32.nnef.tar"), dir.join("f16.nnef.tar"));
    nnef::convert(&m, &onnx, &fp32, Precision::Fp32).unwrap();
    nnef::convert(&m, &onnx, &half, Precision::F16).unwrap();
    let text = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let mark = format!("(\"{}\", \"{}\")", nnef::PRECISION_PROPERTY, nnef::HALF);
    assert!(text(&half).contains(&mark));
    assert!(!text(&fp32).contains(&mark));
    // Its weights are f16: about half the bytes.
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&half) * 10 < size(&fp32) * 6,
        "{} {}",
        size(&half),
        size(&fp32)
    );

    let frames = frames();
    let fit = Some((frames[0].width, frames[0].height));
    let a = run(&m, &fp32, Precision::F16, fit, &frames);
    let b = run(&m, &half, Precision::F16, fit, &frames);
    let total = assert_same(&a, &b, 1e-3, "f16");
    assert!(total > 20, "the frames have boxes to compare ({total})");

    // Loaded as fp32 or int8, it is refused by name.
    for precision in [Precision::Fp32, Precision::Int8] {
        let options = DetectorOptions {
            precision,
            model_file: Some(half.clone()),
            ..DetectorOptions::default()
        };
        let err = Detector::load(m.clone(), &options).err().expect("refused");
        let text = format!("{err}");
        assert!(
            text.contains("precision") && text.contains("f16"),
            "{precision}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_nnef_file_that_does_not_fit_its_manifest_is_refused() {
    let m = Manifest::load(Path::new(MANIFEST)).unwrap();
    let dir = temp_dir("nnef-refusal");
    let converted = dir.join("fp32.nnef.tar");
    nnef::convert(
        &m,
        &m.model_path(Precision::Fp32).unwrap(),
        &converted,
        Precision::Fp32,
    )
    .unwrap();
    let load = |m: Manifest| {
        let options = DetectorOptions {
            precision: Precision::Fp32,
            model_file: Some(converted.clone()),
            ..DetectorOptions::default()
        };
        Detector::load(m, &options).err()
    };
    // Another input name, classes count and embedding width: each named in the refusal.
    let mut wrong = m.clone();
    wrong.input.name = "pixels".into();
    let e = load(wrong).expect("refused");
    assert!(matches!(e, DetectorError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("pixels"), "{e}");
    let mut wrong = m.clone();
    wrong.classes.truncate(20);
    let e = load(wrong).expect("refused");
    assert!(e.to_string().contains("20 classes"), "{e}");
    let mut wrong = m.clone();
    wrong.embedding.as_mut().unwrap().channels = 128;
    let e = load(wrong).expect("refused");
    assert!(e.to_string().contains("embedding tensor"), "{e}");
    // The manifest without an embedding: the file has one output too many.
    let mut wrong = m.clone();
    wrong.embedding = None;
    let e = load(wrong).expect("refused");
    assert!(e.to_string().contains("outputs"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
