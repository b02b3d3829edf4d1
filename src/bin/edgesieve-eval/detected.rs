//! Detection once, selection as often as needed: each source is run through the pipeline once
//! ([`detect_source`]), recording what the select stage needs of every frame (detections,
//! the detector's pooled features, the stream timestamp) with the eval's descriptor; the
//! selection is then replayed from those records by the library's own [`Selector`]
//! ([`select_replay`]), exactly as the pipeline calls it (`select`, then `commit_kept` for a
//! keep). A second pass of the same drive, or the same stream under another policy, costs
//! milliseconds instead of minutes of inference.
//!
//! With `--cache DIR` the records are also written to `DIR` (one file per source, model file
//! and precision) and read back by the next run instead of running the detector again.

use crate::data;
use crate::replay::{new_pipeline, replay};
use crate::Options;
use edgesieve::detect::gate::{luma_grid, LumaGrid, GRID_LEN};
use edgesieve::detect::postprocess::{Detection, Detections};
use edgesieve::run::pipeline::load_manifest;
use edgesieve::select::{FrameSketch, SeenSketch, Selection, Selector};
use edgesieve::source::FrameSource;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the select stage needs of one frame, and what the eval measures it by.
pub struct Detected {
    pub name: String,
    pub timestamp_ms: u64,
    pub detections: Detections,
    /// The detector's pooled embedding features.
    pub features: Vec<f32>,
    /// The eval's independent descriptor ([`data::descriptor`]).
    pub descriptor: Vec<f32>,
    /// The thumbnail descriptor ([`data::thumbnail_descriptor`]).
    pub thumbnail: Vec<f32>,
    /// The frame's luma grid ([`luma_grid`]), for the select stage's look rule.
    pub look: Box<LumaGrid>,
    /// Preprocess + inference + decode.
    pub detect: Duration,
    /// Computing the luma grid (the pipeline does it in its select step).
    pub look_time: Duration,
}

/// The detected frames of one source.
pub struct DetectedRun {
    pub frames: Vec<Detected>,
    /// Wall time of the detection replay (JPEG decode and bookkeeping included).
    pub wall: Duration,
    /// Read from the cache (the detect times are those of the run that wrote it).
    pub cached: bool,
}

/// Every frame of `source` through the detector, stamped `start_ms` plus its stream time;
/// from `opts.cache` when it holds this source (`variant` tells apart sources that describe
/// themselves alike, e.g. the splice seed) for this model and detector configuration.
pub fn detect_source(
    opts: &Options,
    source: &mut dyn FrameSource,
    variant: &str,
    start_ms: u64,
) -> Result<DetectedRun, String> {
    let key = cache_key(opts, source, variant, start_ms);
    let path = opts
        .cache
        .as_ref()
        .map(|dir| dir.join(format!("{:016x}.detected", fnv1a(key.as_bytes()))));
    if let Some(path) = &path {
        match read_cache(path, &key) {
            Ok(Some(run)) => {
                eprintln!("  detections from the cache {}", path.display());
                return Ok(run);
            }
            Ok(None) => {}
            Err(e) => eprintln!("  cache {} unusable ({e}): detecting again", path.display()),
        }
    }
    let pipeline = new_pipeline(opts, source)?;
    let mut frames = Vec::with_capacity(source.len_hint().unwrap_or(0));
    let mut counts = [0u32; GRID_LEN];
    let summary = replay(pipeline, source, start_ms, |pipeline, frame, o| {
        let mut look = Box::new([0.0f32; GRID_LEN]);
        let t = Instant::now();
        luma_grid(
            &frame.rgb,
            frame.width as usize,
            frame.height as usize,
            &mut look,
            &mut counts,
        );
        let look_time = t.elapsed();
        frames.push(Detected {
            look_time,
            look,
            name: frame.name.clone(),
            timestamp_ms: start_ms.saturating_add(frame.time_ms),
            detections: pipeline.detections().clone(),
            features: pipeline.detector().embedding().unwrap_or(&[]).to_vec(),
            descriptor: data::descriptor(frame),
            thumbnail: data::thumbnail_descriptor(frame),
            detect: o.detect_time,
        });
    })?;
    let run = DetectedRun {
        frames,
        wall: summary.elapsed,
        cached: false,
    };
    if let Some(path) = &path {
        if let Err(e) = write_cache(path, &key, &run) {
            eprintln!("  cannot write the cache {}: {e}", path.display());
        }
    }
    Ok(run)
}

/// One frame's selection in a [`select_replay`].
pub struct Selected<'a> {
    pub selector: &'a Selector,
    pub selection: &'a Selection,
    pub kept: bool,
    pub select: Duration,
}

/// The selection over `frames` by a fresh [`Selector`] with the eval's configuration,
/// starting from what an earlier run kept and saw (`before`), as `run` on the same spool
/// does. Every keep decision counts as stored. Calls `each(i, …)` after frame `i` and hands
/// the selector back (its sketches hold what this run kept and saw).
pub fn select_replay<F>(
    opts: &Options,
    frames: &[Detected],
    before: Option<(&FrameSketch, &SeenSketch)>,
    mut each: F,
) -> Result<Selector, String>
where
    F: FnMut(usize, Selected<'_>),
{
    let manifest = load_manifest(&opts.config, &opts.manifest).map_err(crate::err)?;
    let c = &opts.config;
    let mut selector = Selector::new(
        &c.uncertainty,
        &c.embedding,
        &c.policy,
        c.detector.max_detections,
        &manifest,
    )
    .map_err(crate::err)?;
    if let Some((sketch, seen)) = before {
        *selector.sketch_mut() = sketch.clone();
        selector.set_seen_before(Box::new(seen.clone()));
    }
    for (i, f) in frames.iter().enumerate() {
        let t = Instant::now();
        let selection = selector
            .select_with_look(&f.detections, &f.features, Some(&f.look), f.timestamp_ms)
            .map_err(crate::err)?;
        let kept = selection.decision.keep;
        if kept {
            selector.commit_kept(0);
        }
        let select = t.elapsed();
        each(
            i,
            Selected {
                selector: &selector,
                selection: &selection,
                kept,
                select,
            },
        );
    }
    Ok(selector)
}

/// What the records depend on: the source, the start time, the detector's configuration and
/// the model folder's files (their sizes and modification times, so a rebuilt model misses).
fn cache_key(opts: &Options, source: &dyn FrameSource, variant: &str, start_ms: u64) -> String {
    let c = &opts.config;
    let model = c
        .detector
        .model
        .clone()
        .unwrap_or_else(|| opts.manifest.clone());
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{}:{t}", m.len())
            })
            .unwrap_or_default()
    };
    let dir = model.parent().map(Path::to_path_buf).unwrap_or_default();
    let weights: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            v.iter()
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "onnx" || e == "toml" || e == "tar")
                })
                .map(|p| format!("{}={}", p.display(), stamp(p)))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "edgesieve-eval detected v4|{}|{variant}|{start_ms}|{:?}|{}",
        source.describe(),
        c.detector,
        weights.join(",")
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const MAGIC: &[u8; 8] = b"ESDETv4\n";

fn write_cache(path: &Path, key: &str, run: &DetectedRun) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
    w.write_all(MAGIC)?;
    put_bytes(&mut w, key.as_bytes())?;
    put_u64(&mut w, run.wall.as_nanos() as u64)?;
    put_u64(&mut w, run.frames.len() as u64)?;
    for f in &run.frames {
        put_bytes(&mut w, f.name.as_bytes())?;
        put_u64(&mut w, f.timestamp_ms)?;
        put_u64(&mut w, f.detect.as_nanos() as u64)?;
        put_u64(&mut w, f.look_time.as_nanos() as u64)?;
        put_f32s(&mut w, &f.features)?;
        put_f32s(&mut w, &f.descriptor)?;
        put_f32s(&mut w, &f.thumbnail)?;
        put_f32s(&mut w, &f.look[..])?;
        put_u64(&mut w, f.detections.num_classes() as u64)?;
        put_u64(&mut w, f.detections.len() as u64)?;
        for (d, probs) in f.detections.iter() {
            w.write_all(&d.class_id.to_le_bytes())?;
            for v in [d.score, d.objectness] {
                w.write_all(&v.to_le_bytes())?;
            }
            for v in d.bbox {
                w.write_all(&v.to_le_bytes())?;
            }
            for v in probs {
                w.write_all(&v.to_le_bytes())?;
            }
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The cached run, or None when there is no cache file or it holds another key.
fn read_cache(path: &Path, key: &str) -> std::io::Result<Option<DetectedRun>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC || get_bytes(&mut r)? != key.as_bytes() {
        return Ok(None);
    }
    let wall = Duration::from_nanos(get_u64(&mut r)?);
    let count = get_u64(&mut r)? as usize;
    let mut frames = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let name = String::from_utf8(get_bytes(&mut r)?).map_err(std::io::Error::other)?;
        let timestamp_ms = get_u64(&mut r)?;
        let detect = Duration::from_nanos(get_u64(&mut r)?);
        let look_time = Duration::from_nanos(get_u64(&mut r)?);
        let features = get_f32s(&mut r)?;
        let descriptor = get_f32s(&mut r)?;
        let thumbnail = get_f32s(&mut r)?;
        let look: Box<LumaGrid> = get_f32s(&mut r)?
            .into_boxed_slice()
            .try_into()
            .map_err(|_| std::io::Error::other("a luma grid of the wrong size"))?;
        let classes = get_u64(&mut r)? as usize;
        let boxes = get_u64(&mut r)? as usize;
        let mut detections = Detections::new();
        detections.clear(classes);
        let mut probs = vec![0.0f32; classes];
        for _ in 0..boxes {
            let mut id = [0u8; 2];
            r.read_exact(&mut id)?;
            let mut v = [0.0f32; 6];
            for x in &mut v {
                *x = get_f32(&mut r)?;
            }
            for p in &mut probs {
                *p = get_f32(&mut r)?;
            }
            let det = Detection {
                class_id: u16::from_le_bytes(id),
                score: v[0],
                objectness: v[1],
                bbox: [v[2], v[3], v[4], v[5]],
            };
            detections.push(det, &probs);
        }
        frames.push(Detected {
            name,
            timestamp_ms,
            detections,
            features,
            descriptor,
            thumbnail,
            look,
            detect,
            look_time,
        });
    }
    Ok(Some(DetectedRun {
        frames,
        wall,
        cached: true,
    }))
}

fn put_u64(w: &mut impl Write, v: u64) -> std::io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
    put_u64(w, b.len() as u64)?;
    w.write_all(b)
}

fn put_f32s(w: &mut impl Write, v: &[f32]) -> std::io::Result<()> {
    put_u64(w, v.len() as u64)?;
    v.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
}

fn get_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn get_f32(r: &mut impl Read) -> std::io::Result<f32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(f32::from_le_bytes(b))
}

/// At most this many elements in one length-prefixed field (a damaged file must not
/// allocate gigabytes).
const FIELD_MAX: u64 = 1 << 24;

fn get_len(r: &mut impl Read) -> std::io::Result<usize> {
    let n = get_u64(r)?;
    if n > FIELD_MAX {
        return Err(std::io::Error::other(format!("field of {n} elements")));
    }
    Ok(n as usize)
}

fn get_bytes(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut b = vec![0u8; get_len(r)?];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn get_f32s(r: &mut impl Read) -> std::io::Result<Vec<f32>> {
    let n = get_len(r)?;
    (0..n).map(|_| get_f32(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_the_cache_and_another_key_misses() {
        let mut detections = Detections::new();
        detections.clear(3);
        detections.push(
            Detection {
                class_id: 2,
                score: 0.4,
                objectness: 0.8,
                bbox: [1.0, 2.0, 30.0, 40.0],
            },
            &[0.1, 0.2, 0.5],
        );
        let run = DetectedRun {
            frames: vec![Detected {
                name: "000001.jpg".into(),
                timestamp_ms: 66,
                detections,
                features: vec![0.5, -1.0],
                descriptor: vec![0.25; 4],
                thumbnail: vec![0.5; 3],
                look: Box::new([7.5; GRID_LEN]),
                detect: Duration::from_micros(1234),
                look_time: Duration::from_micros(56),
            }],
            wall: Duration::from_millis(5),
            cached: false,
        };
        let dir = std::env::temp_dir().join(format!("edgesieve-eval-cache-{}", std::process::id()));
        let path = dir.join("x.detected");
        write_cache(&path, "key", &run).unwrap();
        assert!(read_cache(&path, "other").unwrap().is_none());
        let back = read_cache(&path, "key").unwrap().unwrap();
        assert!(back.cached);
        let (a, b) = (&run.frames[0], &back.frames[0]);
        assert_eq!(a.name, b.name);
        assert_eq!(a.timestamp_ms, b.timestamp_ms);
        assert_eq!(a.features, b.features);
        assert_eq!(a.descriptor, b.descriptor);
        assert_eq!(a.thumbnail, b.thumbnail);
        assert_eq!(a.look, b.look);
        assert_eq!(a.detect, b.detect);
        assert_eq!(a.look_time, b.look_time);
        assert_eq!(b.detections.num_classes(), 3);
        assert_eq!(a.detections.items(), b.detections.items());
        assert_eq!(a.detections.probs(0), b.detections.probs(0));
        // A truncated file is an error, not a short run.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read_cache(&path, "key").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
