//! The eval's inputs besides the model: clip ranges (clips.json) and the independent frame
//! descriptor. (KITTI labels, annotations.json, are read by [`crate::coco`].)

use edgesieve::source::Frame;
use serde::Deserialize;
use std::path::Path;

/// Grid of the independent descriptor: 16 × 9 cells (the 16:9 frame in 40 × 40 px cells).
pub const DESC_W: usize = 16;
pub const DESC_H: usize = 9;
pub const DESC_DIM: usize = DESC_W * DESC_H * 3;

/// The independent descriptor of a frame, computed from its pixels alone (no model): a 16 × 9
/// RGB thumbnail by area averaging (each cell the mean of the pixels whose centre falls in it),
/// as a 432-vector in [0, 1], minus its own mean (global brightness removed), L2-normalised.
/// Euclidean distance between two descriptors is then in [0, 2] and looks at layout and colour,
/// not exposure.
pub fn descriptor(frame: &Frame) -> Vec<f32> {
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
        let d = descriptor(&a);
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
        assert!(crate::metrics::dist(&d, &descriptor(&b)) < 1e-4);
        // Mirrored: far.
        let c = frame(64, 36, |x, _| {
            if x >= 32 {
                [200, 10, 10]
            } else {
                [10, 10, 200]
            }
        });
        assert!(crate::metrics::dist(&d, &descriptor(&c)) > 1.0);
        // A flat frame stays all zeros, no NaN.
        let flat = descriptor(&frame(16, 9, |_, _| [7, 7, 7]));
        assert!(flat.iter().all(|&x| x == 0.0));
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
