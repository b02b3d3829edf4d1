//! The eval's inputs besides the model: clip ranges (clips.json), the independent frame
//! descriptor (gradient orientations) and the thumbnail descriptor the eval used before the
//! pipeline looked at luma grids itself. (KITTI labels, annotations.json, are read by [`crate::coco`].)

use edgesieve::source::Frame;
use serde::Deserialize;
use std::path::Path;

/// Grid of the thumbnail descriptor: 16 × 9 cells (the 16:9 frame in 40 × 40 px cells).
pub const DESC_W: usize = 16;
pub const DESC_H: usize = 9;
pub const DESC_DIM: usize = DESC_W * DESC_H * 3;

/// The thumbnail descriptor of a frame, computed from its pixels alone (no model): a 16 × 9
/// RGB thumbnail by area averaging (each cell the mean of the pixels whose centre falls in it),
/// as a 432-vector in [0, 1], minus its own mean (global brightness removed), L2-normalised.
/// Euclidean distance between two descriptors is then in [0, 2] and looks at layout and colour,
/// not exposure.
pub fn thumbnail_descriptor(frame: &Frame) -> Vec<f32> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut sum = vec![0.0f64; DESC_DIM];
    let mut count = vec![0u32; DESC_W * DESC_H];
    if w > 0 && h > 0 && frame.rgb.len() >= w * h * 3 {
        for y in 0..h {
            let cy = y * DESC_H / h;
            let row = &frame.rgb[y * w * 3..(y + 1) * w * 3];
            for x in 0..w {
                let c = cy * DESC_W + x * DESC_W / w;
                count[c] += 1;
                for k in 0..3 {
                    sum[c * 3 + k] += row[x * 3 + k] as f64;
                }
            }
        }
    }
    let mut v: Vec<f32> = sum
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let n = count[i / 3];
            if n == 0 {
                0.0
            } else {
                (s / n as f64 / 255.0) as f32
            }
        })
        .collect();
    normalise_centred(&mut v);
    v
}

/// Cells of the gradient descriptor: 8 × 4 over the frame, 8 orientation bins each.
pub const GRAD_W: usize = 8;
pub const GRAD_H: usize = 4;
pub const GRAD_BINS: usize = 8;
pub const GRAD_DIM: usize = GRAD_W * GRAD_H * GRAD_BINS;
/// The luma image the gradients are taken on: the frame averaged down to this size.
const GRAD_IMG_W: usize = 128;
const GRAD_IMG_H: usize = 72;

/// The independent descriptor of a frame, from its pixels alone and unlike anything the
/// pipeline computes (the pipeline sees the detector's features and, for its look rule, a
/// 32x18 grid of luma averages): histograms of gradient orientations. The frame's BT.601 luma
/// is averaged down to 128 × 72; at every inner pixel the central-difference gradient votes its
/// magnitude into one of 8 unsigned orientation bins of its cell (8 × 4 cells); the square
/// roots of the 256 sums (so a few strong edges do not drown the rest) are L2-normalised.
/// Euclidean distance is then in [0, 2]. It looks at structure (edges, their directions and
/// where they are), not at brightness or colour: a uniform brightness change leaves it alone.
pub fn descriptor(frame: &Frame) -> Vec<f32> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let mut out = vec![0.0f32; GRAD_DIM];
    if w == 0 || h == 0 || frame.rgb.len() < w * h * 3 {
        return out;
    }
    let (iw, ih) = (GRAD_IMG_W, GRAD_IMG_H);
    let mut img = vec![0.0f32; iw * ih];
    let mut count = vec![0u32; iw * ih];
    for y in 0..h {
        let cy = y * ih / h;
        let row = &frame.rgb[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            let p = &row[x * 3..x * 3 + 3];
            let c = cy * iw + x * iw / w;
            img[c] += 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
            count[c] += 1;
        }
    }
    for (i, (v, &n)) in img.iter_mut().zip(&count).enumerate() {
        if n > 0 {
            *v /= n as f32;
        } else {
            // A frame smaller than the image: the nearest pixel.
            let (x, y) = ((i % iw) * w / iw, (i / iw) * h / ih);
            let p = &frame.rgb[(y * w + x) * 3..][..3];
            *v = 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
        }
    }
    for y in 1..ih - 1 {
        for x in 1..iw - 1 {
            let gx = img[y * iw + x + 1] - img[y * iw + x - 1];
            let gy = img[(y + 1) * iw + x] - img[(y - 1) * iw + x];
            let m = (gx * gx + gy * gy).sqrt();
            if m == 0.0 {
                continue;
            }
            // Unsigned orientation in [0, π).
            let mut a = gy.atan2(gx);
            if a < 0.0 {
                a += std::f32::consts::PI;
            }
            let bin = ((a / std::f32::consts::PI * GRAD_BINS as f32) as usize).min(GRAD_BINS - 1);
            let cell = (y * GRAD_H / ih) * GRAD_W + x * GRAD_W / iw;
            out[cell * GRAD_BINS + bin] += m;
        }
    }
    out.iter_mut().for_each(|v| *v = v.sqrt());
    let norm = out.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// Subtracts the mean of the components, then scales to unit L2 norm (all 0 when flat).
pub fn normalise_centred(v: &mut [f32]) {
    if v.is_empty() {
        return;
    }
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    v.iter_mut().for_each(|x| *x -= mean);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-5 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        // Flat (up to rounding): no structure to compare.
        v.iter_mut().for_each(|x| *x = 0.0);
    }
}

/// One clip of a sequence: frames first..=last, numbered as the file names (1-based).
#[derive(Debug, Clone, Deserialize)]
pub struct Clip {
    pub clip: String,
    pub first_frame: u64,
    pub last_frame: u64,
}

pub fn load_clips(path: &Path) -> Result<Vec<Clip>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let clips: Vec<Clip> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a clip list: {e}", path.display()))?;
    if clips.is_empty() {
        return Err(format!("{} lists no clips", path.display()));
    }
    Ok(clips)
}

/// The frame number in a file name: "000123.jpg" → 123.
pub fn frame_number(name: &str) -> Option<u64> {
    let stem = name.rsplit('/').next()?.split('.').next()?;
    stem.parse().ok()
}

/// Index into `clips` of the clip holding frame `number`.
pub fn clip_of(clips: &[Clip], number: u64) -> Option<usize> {
    clips
        .iter()
        .position(|c| (c.first_frame..=c.last_frame).contains(&number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coco::{self, coco_class};

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Frame {
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&f(x, y));
            }
        }
        Frame {
            index: 0,
            name: "t".into(),
            time_ms: 0,
            width: w,
            height: h,
            rgb,
            ..Frame::default()
        }
    }

    #[test]
    fn descriptor_is_centred_unit_and_brightness_blind() {
        let a = frame(
            64,
            36,
            |x, _| if x < 32 { [200, 10, 10] } else { [10, 10, 200] },
        );
        let d = thumbnail_descriptor(&a);
        assert_eq!(d.len(), DESC_DIM);
        let norm: f32 = d.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(d.iter().sum::<f32>().abs() < 1e-3);
        // Same picture, brighter by a constant: same descriptor.
        let b = frame(
            64,
            36,
            |x, _| if x < 32 { [220, 30, 30] } else { [30, 30, 220] },
        );
        assert!(crate::metrics::dist(&d, &thumbnail_descriptor(&b)) < 1e-4);
        // Mirrored: far.
        let c = frame(64, 36, |x, _| {
            if x >= 32 {
                [200, 10, 10]
            } else {
                [10, 10, 200]
            }
        });
        assert!(crate::metrics::dist(&d, &thumbnail_descriptor(&c)) > 1.0);
        // A flat frame stays all zeros, no NaN.
        let flat = thumbnail_descriptor(&frame(16, 9, |_, _| [7, 7, 7]));
        assert!(flat.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn gradient_descriptor_sees_structure_not_brightness() {
        // Vertical stripes on the left half.
        let stripes = |x: u32, lift: u8| {
            let v = if x < 64 && (x / 4) % 2 == 0 { 180 } else { 60 };
            [v + lift, v + lift, v + lift]
        };
        let a = descriptor(&frame(128, 72, |x, _| stripes(x, 0)));
        assert_eq!(a.len(), GRAD_DIM);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        // Brighter by a constant: the same.
        let b = descriptor(&frame(128, 72, |x, _| stripes(x, 30)));
        assert!(crate::metrics::dist(&a, &b) < 1e-4);
        // The same stripes turned horizontal: other bins, far.
        let c = descriptor(&frame(128, 72, |x, y| {
            stripes(if x < 64 { y } else { 100 }, 0)
        }));
        assert!(
            crate::metrics::dist(&a, &c) > 1.0,
            "{}",
            crate::metrics::dist(&a, &c)
        );
        // A flat frame: zeros, no NaN.
        assert!(descriptor(&frame(16, 9, |_, _| [7, 7, 7]))
            .iter()
            .all(|&x| x == 0.0));
    }

    #[test]
    fn clips_and_frame_numbers() {
        let clips: Vec<Clip> = serde_json::from_str(
            r#"[{"clip":"a","first_frame":1,"last_frame":3,"count":3},
                {"clip":"b","first_frame":4,"last_frame":9}]"#,
        )
        .unwrap();
        assert_eq!(frame_number("000004.jpg"), Some(4));
        assert_eq!(frame_number("images/000010.jpg"), Some(10));
        assert_eq!(frame_number("x.jpg"), None);
        assert_eq!(clip_of(&clips, 3), Some(0));
        assert_eq!(clip_of(&clips, 4), Some(1));
        assert_eq!(clip_of(&clips, 10), None);
    }

    #[test]
    fn kitti_categories_map_to_coco_classes() {
        assert_eq!(coco_class("Van", Some("car")), Some("car"));
        assert_eq!(
            coco_class(
                "Cyclist",
                Some("person (rider; bicycle not separately boxed)")
            ),
            Some("person")
        );
        assert_eq!(coco_class("Tram", None), Some("train"));
        assert_eq!(coco_class("Misc", None), None);
        assert_eq!(coco_class("Truck", Some("bus")), None);
    }

    #[test]
    fn labels_parse_with_either_category_mapping() {
        let text = r#"{
            "images": [{"id": 1, "file_name": "images/000001.png"}, {"id": 2, "file_name": "000002.png"}],
            "categories": [{"id": 1, "name": "Car", "coco_equivalent": "car"}, {"id": 2, "name": "Van"},
                           {"id": 3, "name": "Misc"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
                            {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5]},
                            {"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}]
        }"#;
        let classes: Vec<String> = ["person", "bicycle", "car"].map(String::from).to_vec();
        let l = coco::parse_labels(text, "t.json", &classes, coco_class).unwrap();
        assert_eq!((l.boxes, l.ignored_boxes), (2, 1));
        assert_eq!(l.labeled_classes, vec![2]);
        assert_eq!(
            l.by_file["000001.png"][0],
            coco::GtBox {
                class: 2,
                bbox: [10.0, 20.0, 40.0, 60.0]
            }
        );
        assert!(l.by_file["000002.png"].is_empty());
        assert_eq!(l.mapping[2], ("Misc".to_string(), None));
        // The detector test counts only the category named "Car": the Van box is ignored.
        let only_car = |c: &str, _: Option<&str>| (c == "Car").then_some("car");
        let l = coco::parse_labels(text, "t.json", &classes, only_car).unwrap();
        assert_eq!((l.boxes, l.ignored_boxes), (1, 2));
        assert_eq!(l.by_file["000001.png"].len(), 1);
        let bad = text.replace(
            r#""image_id": 1, "category_id": 3"#,
            r#""image_id": 9, "category_id": 3"#,
        );
        let e = coco::parse_labels(&bad, "t.json", &classes, coco_class)
            .err()
            .unwrap();
        assert!(
            e.contains("t.json") && e.contains("unknown image id 9"),
            "{e}"
        );
    }
}
