//! edgesieve: on-vehicle selection of the camera frames worth labeling.
//!
//! Data flow, one module per stage: frame source → preprocess → detector (+ postprocess) →
//! scores → sketch → policy → spool → uploader.

pub mod bench;
pub mod cli;
pub mod config;
pub mod detector;
pub mod embedding;
pub mod logger;
pub mod manifest;
pub mod pipeline;
pub mod policy;
pub mod postprocess;
pub mod preprocess;
pub mod record;
pub mod rng;
pub mod score;
pub mod sketch;
pub mod source;
pub mod spool;

pub mod shutdown;
