//! `edgesieve export`: the spool written to a folder, for teams on another backend or carrying a
//! disk home: `images/<stable id>.jpg` plus either `tasks.json` (a Label Studio import file: one
//! task per image with its prediction and meta, image paths under a prefix the caller chooses,
//! e.g. Label Studio's local-files URL) or `coco.json` (COCO detection format, the predicted
//! boxes in the JPEG's pixels with their scores, categories the model's classes, `id + 1`).
//!
//! The spool is only read (no lock, entries stay): exporting and uploading the same entries
//! makes two copies on a server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{json, Value};

use super::label_studio::{context_task_json, task_json};
use super::Item;
use crate::store::context::ContextSet;
use crate::store::spool::{Spool, SpoolError};

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    LabelStudio,
    Coco,
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "label-studio" => Ok(ExportFormat::LabelStudio),
            "coco" => Ok(ExportFormat::Coco),
            other => Err(format!("expected label-studio or coco, got {other:?}")),
        }
    }
}

/// Why an export failed.
#[derive(Debug)]
pub enum ExportError {
    Spool(SpoolError),
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JPEG whose size cannot be read (it passed its CRC: a bug upstream, not a disk error).
    Jpeg {
        path: PathBuf,
    },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Spool(e) => e.fmt(f),
            ExportError::Write { path, .. } => write!(f, "cannot write {}", path.display()),
            ExportError::Jpeg { path } => write!(f, "{}: no JPEG size in it", path.display()),
        }
    }
}

impl std::error::Error for ExportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExportError::Spool(e) => Some(e),
            ExportError::Write { source, .. } => Some(source),
            ExportError::Jpeg { .. } => None,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub images: usize,
    pub boxes: usize,
    /// The JSON file written.
    pub file: PathBuf,
}

/// Exports every intact entry of the spool at `spool_dir` into `out` (created if needed) as
/// `format`; `device_id` names the images as the uploader does, `classes` are the model's class
/// names (COCO categories), `image_prefix` goes before `images/<name>` in Label Studio tasks.
pub fn export(
    spool_dir: &Path,
    out: &Path,
    format: ExportFormat,
    device_id: &str,
    classes: &[String],
    image_prefix: &str,
) -> Result<ExportReport, ExportError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Write { path, source }
    };
    let images_dir = out.join("images");
    std::fs::create_dir_all(&images_dir).map_err(write_err(&images_dir))?;
    let records = Spool::read_entries(spool_dir).map_err(ExportError::Spool)?;
    let (mut tasks, mut coco_images, mut annotations) = (Vec::new(), Vec::new(), Vec::new());
    let mut boxes = 0;
    let read = |src: &Path| {
        std::fs::read(src).map_err(|source| {
            ExportError::Spool(SpoolError::Io {
                path: src.to_path_buf(),
                source,
            })
        })
    };
    for (id, record, frames) in &records {
        let src = Spool::jpeg_path(spool_dir, *id);
        let jpeg = read(&src)?;
        let context = ContextSet {
            frames: frames.clone(),
            jpegs: if frames.is_empty() {
                Vec::new()
            } else {
                read(&Spool::context_path(spool_dir, *id))?
            },
        };
        let (jw, jh) =
            crate::store::jpeg_dimensions(&jpeg).ok_or(ExportError::Jpeg { path: src.clone() })?;
        let stable_id = format!("{device_id}-{id:012}");
        let item = Item {
            stable_id: &stable_id,
            device_id,
            spool_id: *id,
            jpeg: &jpeg,
            jpeg_width: jw,
            jpeg_height: jh,
            record,
            context: &context,
        };
        let name = item.file_name();
        let dst = images_dir.join(&name);
        std::fs::write(&dst, &jpeg).map_err(write_err(&dst))?;
        // Context frames: their images beside it, their tasks (Label Studio) or images (COCO)
        // with the event's metadata and no boxes.
        for (frame, bytes) in context.iter() {
            let cname = item.context_file_name(frame);
            let cdst = images_dir.join(&cname);
            std::fs::write(&cdst, bytes).map_err(write_err(&cdst))?;
            let image = format!("images/{cname}");
            match format {
                ExportFormat::LabelStudio => tasks.push(context_task_json(
                    &item,
                    frame,
                    &format!("{image_prefix}{image}"),
                )),
                ExportFormat::Coco => {
                    let (w, h) = crate::store::jpeg_dimensions(bytes).unwrap_or((0, 0));
                    coco_images.push(json!({
                        "id": coco_images.len() as u64 + 1, "file_name": image,
                        "width": w, "height": h, "edgesieve": item.context_meta(frame),
                    }));
                }
            }
        }
        boxes += record.detections.len();
        match format {
            ExportFormat::LabelStudio => {
                tasks.push(task_json(&item, &format!("{image_prefix}images/{name}")))
            }
            ExportFormat::Coco => {
                let image_id = coco_images.len() as u64 + 1;
                coco_images.push(json!({
                    "id": image_id, "file_name": format!("images/{name}"),
                    "width": jw, "height": jh,
                    "edgesieve": item.meta(),
                }));
                let (sx, sy) = (
                    f64::from(jw) / f64::from(record.width.max(1)),
                    f64::from(jh) / f64::from(record.height.max(1)),
                );
                for d in &record.detections {
                    let x = (f64::from(d.bbox[0]) * sx).clamp(0.0, f64::from(jw));
                    let y = (f64::from(d.bbox[1]) * sy).clamp(0.0, f64::from(jh));
                    let w = (f64::from(d.bbox[2]) * sx).clamp(0.0, f64::from(jw)) - x;
                    let h = (f64::from(d.bbox[3]) * sy).clamp(0.0, f64::from(jh)) - y;
                    annotations.push(json!({
                        "id": annotations.len() + 1, "image_id": image_id,
                        "category_id": u64::from(d.class_id) + 1,
                        "bbox": [x, y, w.max(0.0), h.max(0.0)], "area": w.max(0.0) * h.max(0.0),
                        "iscrowd": 0, "score": d.score,
                    }));
                }
            }
        }
    }
    let (file, value): (PathBuf, Value) = match format {
        ExportFormat::LabelStudio => (out.join("tasks.json"), Value::Array(tasks)),
        ExportFormat::Coco => {
            let categories: Vec<Value> = classes
                .iter()
                .enumerate()
                .map(|(i, name)| json!({"id": i + 1, "name": name}))
                .collect();
            (
                out.join("coco.json"),
                json!({
                    "info": {"description": "frames kept by edgesieve, predicted boxes"},
                    "images": coco_images,
                    "annotations": annotations,
                    "categories": categories,
                }),
            )
        }
    };
    let text = serde_json::to_vec_pretty(&value).map_err(|e| ExportError::Write {
        path: file.clone(),
        source: e.into(),
    })?;
    crate::store::write_file_atomic(&file, &text).map_err(|e| match e {
        SpoolError::Io { source, .. } | SpoolError::DiskFull { source, .. } => ExportError::Write {
            path: file.clone(),
            source,
        },
        other => ExportError::Spool(other),
    })?;
    Ok(ExportReport {
        images: records.len(),
        boxes,
        file,
    })
}
