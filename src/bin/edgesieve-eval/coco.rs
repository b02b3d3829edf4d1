//! Labeled boxes from a COCO-style `annotations.json` (the KITTI subset's labels).
//!
//! Self-contained (serde, serde_json and std only): the eval uses it as a module, and
//! `tests/detector_kitti.rs` includes the same file with `#[path]`, so both read the labels the
//! same way. What differs between them is which categories count, and as what class: a
//! parameter of [`load_labels`] ([`coco_class`] for the eval).

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// A labeled box, class as a model class id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GtBox {
    pub class: u16,
    /// x1, y1, x2, y2 in frame pixels.
    pub bbox: [f32; 4],
}

/// Labeled boxes per image file name, classes mapped to model class ids.
pub struct Labels {
    /// Every image of the file (by base name), with its boxes of a counted category (maybe none).
    pub by_file: HashMap<String, Vec<GtBox>>,
    /// Model class ids that the labels cover, in category order.
    pub labeled_classes: Vec<u16>,
    /// Category → class name (None: ignored), as used, in the file's order.
    pub mapping: Vec<(String, Option<String>)>,
    /// Boxes kept, and boxes of ignored categories.
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
pub fn coco_class(category: &str, hint: Option<&str>) -> Option<&'static str> {
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

/// Which class a category's boxes count as: called with the category's name and its
/// `coco_equivalent` hint; returns a class name of `classes`, or None to ignore its boxes.
pub type CategoryClass = fn(&str, Option<&str>) -> Option<&'static str>;

/// Reads the labels at `path` (see [`parse_labels`]).
pub fn load_labels(
    path: &Path,
    classes: &[String],
    category_class: CategoryClass,
) -> Result<Labels, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_labels(&text, &path.display().to_string(), classes, category_class)
}

/// Parses COCO-style labels (`origin` names them in errors). Boxes become (x1, y1, x2, y2),
/// filed under the base name of their image; a category counts as the class
/// `category_class` names, if `classes` has it, else its boxes are ignored. An annotation of an
/// unknown image is an error.
pub fn parse_labels(
    text: &str,
    origin: &str,
    classes: &[String],
    category_class: CategoryClass,
) -> Result<Labels, String> {
    let coco: Coco = serde_json::from_str(text)
        .map_err(|e| format!("{origin} is not COCO-style annotations: {e}"))?;
    let class_id = |name: &str| classes.iter().position(|c| c == name).map(|i| i as u16);
    let mut cat: HashMap<u64, Option<u16>> = HashMap::new();
    let mut mapping = Vec::new();
    let mut labeled_classes = Vec::new();
    for c in &coco.categories {
        let class_name = category_class(&c.name, c.coco_equivalent.as_deref());
        let id = class_name.and_then(class_id);
        if let Some(id) = id {
            if !labeled_classes.contains(&id) {
                labeled_classes.push(id);
            }
        }
        mapping.push((c.name.clone(), id.and(class_name.map(str::to_string))));
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
                "{origin}: annotation for unknown image id {}",
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
