//! edgesieve: on-vehicle selection of the camera frames worth labeling.
//!
//! Data flow, one module per stage: frame source → preprocess → detector (+ postprocess) →
//! scores → sketch → policy → spool → uploader.

pub mod bench;
pub mod cli;
pub mod detector;
pub mod logger;
pub mod manifest;
pub mod postprocess;
pub mod preprocess;
pub mod source;
pub mod record;
pub mod rng;
pub mod config;
pub mod pipeline;
pub mod score;
pub mod spool;
pub mod policy;
pub mod sketch;
pub mod embedding;

pub mod shutdown;
