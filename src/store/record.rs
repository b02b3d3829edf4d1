//! What is kept about a frame: the record the policy produces and the spool stores.

use serde::{Deserialize, Serialize};

/// Why a frame was kept. A frame may have several reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// Its combined uncertainty/novelty value passed the adaptive threshold.
    Value,
    /// Random exploration draw.
    Explore,
    /// A class trigger fired (class id).
    ClassTrigger(u16),
    /// A class seen rarely so far is present (class id).
    RareClass(u16),
}

/// A detection as stored with a kept frame: a pre-annotation for the labelers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDetection {
    pub class_id: u16,
    pub class_name: String,
    pub score: f32,
    pub objectness: f32,
    /// x1, y1, x2, y2 in frame pixels.
    pub bbox: [f32; 4],
    pub class_probs: Vec<f32>,
}

/// The scores a frame was judged on.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FrameScores {
    /// Frame uncertainty in [0, 1].
    pub uncertainty: f32,
    /// Distance to the nearest kept frame in embedding space.
    pub novelty: f32,
    /// Combined value the policy ranked the frame by.
    pub value: f32,
    /// The adaptive threshold at the time of the decision.
    pub threshold: f32,
}

/// One kept frame's metadata (the JPEG is stored beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptRecord {
    /// Sequence number of the frame in its run.
    pub frame_index: u64,
    /// Frame name from the source (file name, or stream#n).
    pub frame_name: String,
    /// Source description (folder path, y4m file, stdin).
    pub source: String,
    /// Capture time, milliseconds since the Unix epoch (stream time for recorded input).
    pub timestamp_ms: u64,
    pub width: u32,
    pub height: u32,
    pub model: String,
    pub detections: Vec<StoredDetection>,
    pub scores: FrameScores,
    pub embedding: Vec<f32>,
    pub reasons: Vec<Reason>,
}

/// One context frame of a kept frame's event (`[context]`): a frame just before or after it,
/// stored as a JPEG beside the entry (see the spool's `.ctx` file) and uploaded in its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextFrame {
    /// Position relative to the kept frame, in frames the pipeline saw: -2 is two before, 1 is
    /// the next one.
    pub offset: i32,
    pub frame_index: u64,
    pub frame_name: String,
    /// Capture time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Length and CRC-32 of its JPEG in the entry's context file (the JPEGs follow each other
    /// in the order of this list).
    pub jpeg_len: u32,
    pub jpeg_crc: u32,
}
