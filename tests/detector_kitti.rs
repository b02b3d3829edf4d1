//! The real detector on real labeled frames: both models find the labeled cars, the int8 model
//! stays close to fp32, and models that do not fit their manifest are refused.

use edgesieve::detect::manifest::{Manifest, Precision};
use edgesieve::detect::model::{Detector, DetectorError, DetectorOptions};
use edgesieve::detect::postprocess::{iou, Detections};
use edgesieve::source::{self, Frame};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The eval's label reader; this test reads only the boxes.
#[path = "../src/bin/edgesieve-eval/coco.rs"]
#[allow(dead_code)]
mod coco;

const KITTI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/labeled-kitti-tiny"
);
const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/yolox_nano.toml");

/// Measured on 2026-11-23 (x86_64): car recall at IoU 0.5, score >= 0.3 is 0.598 (fp32) and
/// 0.593 (int8) over the 209 KITTI "Car" boxes. KITTI frames are 1242x375, so the letterbox
/// shrinks cars to a third; the nano model misses most small distant ones. Floors sit below the
/// measurement with room for platform float differences.
const CAR_RECALL_FLOOR: f64 = 0.50;
const INT8_MAX_RECALL_DROP: f64 = 0.08;
const SCORE_THRESHOLD: f32 = 0.3;

fn manifest() -> Manifest {
    Manifest::load(Path::new(MANIFEST)).expect("default manifest")
}

fn require_model(precision: Precision) -> PathBuf {
    let path = manifest().model_path(precision).unwrap();
    assert!(
        path.is_file(),
        "{} is missing: run models/fetch (it copies the fp32 model and builds the int8 one)",
        path.display()
    );
    path
}

/// Labeled boxes of the KITTI category "Car" (not "Van") per image file name, as `classes`' "car".
fn labeled_cars(classes: &[String]) -> HashMap<String, Vec<coco::GtBox>> {
    let only_car = |category: &str, _hint: Option<&str>| (category == "Car").then_some("car");
    let path = PathBuf::from(format!("{KITTI}/annotations.json"));
    coco::load_labels(&path, classes, only_car).unwrap().by_file
}

/// The model input a recall is measured with.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// The manifest's 416x416.
    Square,
    /// Fitted to the folder's frames, as `run` does: 416x160 for KITTI's ~1242x375.
    Fit,
    /// Fitted to frames of this size.
    FitFor(u32, u32),
}

/// Returns (recall, matched, total) of the labeled cars, with the model input of `shape`.
fn car_recall(precision: Precision, shape: Shape) -> (f64, usize, usize) {
    require_model(precision);
    let m = manifest();
    let car_id = m.classes.iter().position(|c| c == "car").unwrap() as u16;
    let cars = labeled_cars(&m.classes);
    let mut source = source::open(&format!("{KITTI}/images")).unwrap();
    let (fit_frame, expected) = match shape {
        Shape::Square => (None, (416, 416)),
        Shape::Fit => (source.frame_size(), (416, 160)),
        Shape::FitFor(w, h) => (Some((w, h)), (416, 256)),
    };
    let options = DetectorOptions {
        precision,
        fit_frame,
        ..DetectorOptions::default()
    };
    let mut detector = Detector::load(m, &options).expect("model loads");
    let input = &detector.manifest().input;
    assert_eq!((input.width, input.height), expected);
    let mut frame = Frame::new();
    let mut dets = Detections::new();
    let (mut matched, mut total, mut frames) = (0, 0, 0);
    while let Some(r) = source.next_frame(&mut frame) {
        r.expect("KITTI frame decodes");
        frames += 1;
        detector
            .detect(&frame.rgb, frame.width, frame.height, &mut dets)
            .unwrap();
        for gt in cars.get(&frame.name).map(Vec::as_slice).unwrap_or(&[]) {
            total += 1;
            let hit = dets.items().iter().any(|d| {
                d.class_id == car_id && d.score >= SCORE_THRESHOLD && iou(&d.bbox, &gt.bbox) >= 0.5
            });
            matched += usize::from(hit);
        }
    }
    assert_eq!(frames, 75);
    (matched as f64 / total as f64, matched, total)
}

#[test]
fn both_models_find_the_labeled_cars() {
    for fit in [Shape::Fit, Shape::Square] {
        let (fp32, m32, total) = car_recall(Precision::Fp32, fit);
        let (int8, m8, _) = car_recall(Precision::Int8, fit);
        eprintln!(
            "car recall @IoU0.5, {} input: fp32 {fp32:.3} ({m32}/{total}), int8 {int8:.3} ({m8}/{total})",
            if fit == Shape::Fit { "fit" } else { "square" }
        );
        assert_eq!(total, 209, "the labeled set has 209 cars");
        assert!(fp32 >= CAR_RECALL_FLOOR, "fp32 car recall {fp32:.3}");
        assert!(int8 >= CAR_RECALL_FLOOR, "int8 car recall {int8:.3}");
        assert!(
            fp32 - int8 <= INT8_MAX_RECALL_DROP,
            "int8 recall {int8:.3} too far below fp32 {fp32:.3}"
        );
    }
}

/// The fit input (416x160 for KITTI's 1242x375, the most extreme aspect of the data) runs the
/// same weights on the same picture without the 288 rows of padding: it must find the cars the
/// square input finds (issue 11: within 0.01 of its recall).
#[test]
fn the_fit_input_finds_the_cars_the_square_one_finds() {
    for precision in [Precision::Fp32, Precision::Int8] {
        let (square, ms, _) = car_recall(precision, Shape::Square);
        let (fit, mf, _) = car_recall(precision, Shape::Fit);
        eprintln!("{precision}: car recall square {square:.3} ({ms}), fit {fit:.3} ({mf})");
        assert!(
            fit >= square - 0.01,
            "{precision}: fit recall {fit:.3} below square {square:.3} by more than 0.01"
        );
    }
}

/// `detector.precision = "f16"` (the fp32 file computing in half precision, for ARMv8.2 cores)
/// finds the cars fp32 finds: recall within 0.01 of fp32's on the fit input. On x86_64 the f16
/// arithmetic is emulated (same roundings, ~17x slower: ~7 s here); on aarch64 with FEAT_FP16
/// tract's f16 kernels run it.
#[test]
fn the_f16_model_finds_the_cars_fp32_finds() {
    let (fp32, m32, total) = car_recall(Precision::Fp32, Shape::Fit);
    let (f16, m16, _) = car_recall(Precision::F16, Shape::Fit);
    eprintln!(
        "car recall, fit input: fp32 {fp32:.3} ({m32}/{total}), f16 {f16:.3} ({m16}/{total})"
    );
    assert!(
        (fp32 - f16).abs() <= 0.01,
        "f16 recall {f16:.3} differs from fp32 {fp32:.3} by more than 0.01"
    );
}

/// A model shaped for a 16:9 camera (416x256) that is then handed frames of another size
/// letterboxes them into the same input: KITTI's 1242x375 frames, 416x125 of picture in 416x256,
/// still find their cars, and the detector is not rebuilt.
#[test]
fn frames_of_another_size_are_letterboxed_into_the_fitted_shape() {
    let (recall, matched, total) = car_recall(Precision::Fp32, Shape::FitFor(640, 360));
    eprintln!("fp32 shaped for 640x360, on KITTI: car recall {recall:.3} ({matched}/{total})");
    assert!(recall >= CAR_RECALL_FLOOR, "car recall {recall:.3}");
}

#[test]
fn model_with_wrong_input_size_is_refused() {
    require_model(Precision::Fp32);
    let mut m = manifest();
    m.input.width = 320;
    m.input.height = 320;
    let err = Detector::load(
        m,
        &DetectorOptions {
            precision: Precision::Fp32,
            ..Default::default()
        },
    )
    .err()
    .expect("a 320x320 manifest must refuse a 416x416 model");
    let text = err.to_string();
    assert!(matches!(err, DetectorError::Mismatch { .. }), "{text}");
    assert!(
        text.contains("[1, 3, 320, 320]") && text.contains("416"),
        "{text}"
    );
}

#[test]
fn model_with_wrong_class_count_is_refused() {
    require_model(Precision::Int8);
    let mut m = manifest();
    m.classes.truncate(20);
    let err = Detector::load(m, &DetectorOptions::default())
        .err()
        .expect("a 20-class manifest must refuse an 80-class model");
    let text = err.to_string();
    assert!(text.contains("output shape"), "{text}");
    assert!(
        text.contains("[1, 3549, 25]") && text.contains("85"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_onnx_is_refused_with_its_path() {
    let m = manifest();
    let not_a_model = PathBuf::from(format!("{KITTI}/images/000000.jpg"));
    let err = Detector::load(
        m,
        &DetectorOptions {
            model_file: Some(not_a_model),
            ..Default::default()
        },
    )
    .err()
    .expect("a JPEG is not a model");
    assert!(matches!(err, DetectorError::Load { .. }), "{err}");
    assert!(err.to_string().contains("000000.jpg"), "{err}");
}

#[test]
fn missing_model_file_says_how_to_get_it() {
    let mut m = manifest();
    m.fp32_file = "no-such-model.onnx".into();
    m.fp32_nnef = None;
    let err = Detector::load(
        m,
        &DetectorOptions {
            precision: Precision::Fp32,
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("models/fetch"), "{err}");
}

#[test]
fn embedding_is_read_from_the_same_inference() {
    require_model(Precision::Int8);
    let mut detector = Detector::load(manifest(), &DetectorOptions::default()).unwrap();
    let mut source = source::open(&format!("{KITTI}/images")).unwrap();
    let mut frame = Frame::new();
    let mut dets = Detections::new();
    let mut embeddings = Vec::new();
    for _ in 0..2 {
        source.next_frame(&mut frame).unwrap().unwrap();
        detector
            .detect(&frame.rgb, frame.width, frame.height, &mut dets)
            .unwrap();
        let e = detector.embedding().expect("manifest names an embedding");
        let channels = manifest().embedding.as_ref().unwrap().channels;
        assert_eq!(e.len(), channels);
        assert!(e.iter().all(|v| v.is_finite()));
        embeddings.push(e.to_vec());
    }
    // Two different scenes give different embeddings.
    assert_ne!(embeddings[0], embeddings[1]);
}
