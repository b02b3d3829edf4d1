//! `edgesieve detect`: the detector alone, one JSON line per detection.

use std::fmt;
use std::io::{self, Write};

use super::{FrameHandler, FrameInfo, Tally};
use crate::detect::model::{Detector, DetectorError};
use crate::detect::postprocess::{Detection, Detections};
use crate::source::Frame;

/// Why a detection line could not be produced.
#[derive(Debug)]
pub enum DetectionsError {
    Detector(DetectorError),
    /// Writing the output failed (other than a reader that went away).
    Write(io::Error),
}

impl fmt::Display for DetectionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectionsError::Detector(e) => e.fmt(f),
            DetectionsError::Write(_) => f.write_str("cannot write detections"),
        }
    }
}

impl std::error::Error for DetectionsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DetectionsError::Detector(e) => e.source(),
            DetectionsError::Write(e) => Some(e),
        }
    }
}

/// Runs the detector on each frame and writes a JSON line per detection at or above `threshold`:
/// frame, index, class, class_id, score, box `[x1, y1, x2, y2]` in frame pixels.
pub struct DetectionWriter<W: Write> {
    detector: Detector,
    dets: Detections,
    threshold: f32,
    out: W,
    line: Vec<u8>,
    /// Detections written.
    pub written: u64,
    /// The reader went away (`| head`): stop quietly.
    closed: bool,
}

impl<W: Write> DetectionWriter<W> {
    pub fn new(detector: Detector, threshold: f32, out: W) -> DetectionWriter<W> {
        DetectionWriter {
            detector,
            dets: Detections::new(),
            threshold,
            out,
            line: Vec::with_capacity(256),
            written: 0,
            closed: false,
        }
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Flushes the output; a reader that went away is not an error.
    pub fn flush(&mut self) -> Result<(), DetectionsError> {
        match self.out.flush() {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(DetectionsError::Write(e)),
            _ => Ok(()),
        }
    }
}

impl<W: Write> FrameHandler for DetectionWriter<W> {
    type Error = DetectionsError;

    fn handle(
        &mut self,
        frame: &Frame,
        _info: &FrameInfo,
        _tally: &mut Tally,
    ) -> Result<(), DetectionsError> {
        self.detector
            .detect(&frame.rgb, frame.width, frame.height, &mut self.dets)
            .map_err(DetectionsError::Detector)?;
        let classes = &self.detector.manifest().classes;
        for d in self
            .dets
            .items()
            .iter()
            .filter(|d| d.score >= self.threshold)
        {
            self.line.clear();
            write_detection_json(&mut self.line, frame, d, classes);
            match self.out.write_all(&self.line) {
                Ok(()) => self.written += 1,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.closed = true;
                    break;
                }
                Err(e) => return Err(DetectionsError::Write(e)),
            }
        }
        Ok(())
    }

    fn wants_more(&self) -> bool {
        !self.closed
    }
}

fn write_detection_json(buf: &mut Vec<u8>, frame: &Frame, d: &Detection, classes: &[String]) {
    let class = classes
        .get(d.class_id as usize)
        .map(String::as_str)
        .unwrap_or("?");
    let b = d.bbox;
    // serde_json for the strings (escaping); numbers rounded for readable lines.
    let _ = writeln!(
        buf,
        "{{\"frame\":{},\"index\":{},\"class\":{},\"class_id\":{},\"score\":{:.4},\"box\":[{:.1},{:.1},{:.1},{:.1}]}}",
        serde_json::Value::from(frame.name.as_str()),
        frame.index,
        serde_json::Value::from(class),
        d.class_id,
        d.score,
        b[0],
        b[1],
        b[2],
        b[3]
    );
}
