//! The eval's inputs besides the model: clip ranges (clips.json), KITTI labels
//! (annotations.json), and the independent frame descriptor.

use crate::metrics::GtBox;
use edgesieve::source::Frame;
use serde::Deserialize;
use std::collections::HashMap;
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

/// Labeled boxes per image file name, classes mapped to model class ids.
pub struct Labels {
    pub by_file: HashMap<String, Vec<GtBox>>,
    /// Model class ids that the labels cover (car, truck, person, train).
    pub labeled_classes: Vec<u16>,
    /// KITTI category → COCO class name (None: ignored), as used.
    pub mapping: Vec<(String, Option<String>)>,
    pub boxes: usize,
    pub ignored_boxes: usize,
}

#[derive(Deserialize)]
struct Coco {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    category_id: u64,
    bbox: [f32; 4],
}

#[derive(Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
    #[serde(default)]
    coco_equivalent: Option<String>,
}

/// The COCO class a KITTI category counts as: Car/Van → car, Truck → truck,
/// Pedestrian/Person_sitting/Cyclist → person, Tram → train, anything else (Misc) → none. The
/// file's own `coco_equivalent` hint must agree when present (its first word: the Cyclist hint
/// reads "person (rider; …)").
fn coco_class(category: &str, hint: Option<&str>) -> Option<&'static str> {
    let fixed = match category {
        "Car" | "Van" => Some("car"),
        "Truck" => Some("truck"),
        "Pedestrian" | "Person_sitting" | "Cyclist" => Some("person"),
        "Tram" => Some("train"),
        _ => None,
    };
    let hinted = hint.and_then(|h| h.split_whitespace().next());
    match (fixed, hinted) {
        (Some(f), Some(h)) if f != h => None,
        (f, _) => f,
    }
}

pub fn load_labels(path: &Path, classes: &[String]) -> Result<Labels, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let coco: Coco = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not COCO-style annotations: {e}", path.display()))?;
    let class_id = |name: &str| classes.iter().position(|c| c == name).map(|i| i as u16);
    let mut cat: HashMap<u64, Option<u16>> = HashMap::new();
    let mut mapping = Vec::new();
    let mut labeled_classes = Vec::new();
    for c in &coco.categories {
        let coco_name = coco_class(&c.name, c.coco_equivalent.as_deref());
        let id = coco_name.and_then(class_id);
        if let Some(id) = id {
            if !labeled_classes.contains(&id) {
                labeled_classes.push(id);
            }
        }
        mapping.push((c.name.clone(), id.and(coco_name.map(str::to_string))));
        cat.insert(c.id, id);
    }
    let file_of: HashMap<u64, String> = coco
        .images
        .iter()
        .map(|i| {
            let base = i.file_name.rsplit('/').next().unwrap_or(&i.file_name);
            (i.id, base.to_string())
        })
        .collect();
    let mut by_file: HashMap<String, Vec<GtBox>> =
        file_of.values().map(|f| (f.clone(), Vec::new())).collect();
    let (mut boxes, mut ignored_boxes) = (0, 0);
    for a in &coco.annotations {
        let Some(file) = file_of.get(&a.image_id) else {
            return Err(format!(
                "{}: annotation for unknown image id {}",
                path.display(),
                a.image_id
            ));
        };
        match cat.get(&a.category_id).copied().flatten() {
            Some(class) => {
                let [x, y, w, h] = a.bbox;
                by_file.entry(file.clone()).or_default().push(GtBox {
                    class,
                    bbox: [x, y, x + w, y + h],
                });
                boxes += 1;
            }
            None => ignored_boxes += 1,
        }
    }
    Ok(Labels {
        by_file,
        labeled_classes,
        mapping,
        boxes,
        ignored_boxes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
