//! edgesieve: on-vehicle selection of the camera frames worth labeling.
//!
//! The module tree is the data flow; a frame goes, in order, through:
//!
//! 1. [`source`]: frames in (a folder or list of images, a YUV4MPEG2 stream), decoded to RGB8.
//! 2. [`detect`]: the quantized detector: [`detect::preprocess`] (letterbox),
//!    [`detect::model`] (tract inference), [`detect::postprocess`] (YOLOX decode, NMS).
//! 3. [`select`]: the keep decision: [`select::uncertainty`] of the detections,
//!    [`select::embedding`] of the detector's features, novelty against the
//!    [`select::sketch`] of what was kept, and the budgeted [`select::policy`].
//! 4. [`store`]: where kept frames go: the crash-safe on-disk [`store::spool`].
//! 5. [`upload`]: from the spool to the labeling backend ([`upload::label_studio`]), exactly
//!    once, highest value first.
//!
//! [`run`] is the job loop that drives a source through the stages into a store, once for every
//! command (`run`, `detect`, `bench`, the evaluation). [`config`] gathers each stage's typed
//! configuration; [`util`] holds the small tools the binaries share (argument parsing, logging, a
//! seeded RNG).

pub mod config;
pub mod detect;
pub mod run;
pub mod select;
pub mod source;
pub mod store;
pub mod upload;
pub mod util;
