//! Part 2, recall of rare frames: the night and rain frames of conditions-mixed spliced at seeded
//! positions into the day frames of drive-udacity-lanelines, replayed as one stream.

use crate::detected::{detect_source, select_replay};
use crate::{data_dir, metrics, open_source, Options, Out, RARE_DIR, UDACITY_DIR};
use edgesieve::source::{frame_time_ms, Frame, FrameSource, SourceError};
use edgesieve::util::rng::SplitMix64;
use std::collections::HashSet;
use std::path::Path;

/// Udacity frames: every 2nd frame of 25 fps video, 80 ms apart; the spliced stream keeps
/// that rate.
const UDACITY_FPS: f64 = 12.5;

/// Positions (sorted, distinct) of `m` spliced frames in a sequence of `n + m` frames.
fn splice_positions(n: usize, m: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    metrics::random_selection(n + m, m, &mut rng)
}

/// The frames of `day` with those of `rare` spliced in at `positions` (sorted): the frame at
/// position `p` of the stream is the next rare frame when `p` is one of `positions`, else the
/// next day frame. Frames are renumbered by position, at [`UDACITY_FPS`].
///
/// A frame that fails to decode is passed on (the job skips it) and takes no position: the
/// next call reads on from the same source. A rare source that runs out still uses up its
/// position; once the day frames run out (some failed to decode), the remaining rare ones
/// follow.
struct Spliced {
    day: Box<dyn FrameSource>,
    rare: Box<dyn FrameSource>,
    positions: Vec<usize>,
    /// Index into `positions` of the next rare frame's position.
    next_rare: usize,
    /// Position of the next frame.
    pos: usize,
    day_done: bool,
    /// The source (true: rare) the position in hand reads from, once chosen.
    reading: Option<bool>,
    /// A fatal error ended the stream.
    failed: bool,
    /// Positions the rare frames got.
    rare_at: Vec<usize>,
}

impl Spliced {
    fn new(day: Box<dyn FrameSource>, rare: Box<dyn FrameSource>, positions: Vec<usize>) -> Self {
        Spliced {
            day,
            rare,
            positions,
            next_rare: 0,
            pos: 0,
            day_done: false,
            reading: None,
            failed: false,
            rare_at: Vec::new(),
        }
    }

    /// Positions of the rare frames handed out so far, ascending.
    #[cfg(test)]
    fn rare_positions(&self) -> &[usize] {
        &self.rare_at
    }
}

impl FrameSource for Spliced {
    fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
        if self.failed {
            return None;
        }
        loop {
            let from_rare = match self.reading {
                Some(from_rare) => from_rare,
                None => {
                    let next = self.positions.get(self.next_rare);
                    let from_rare = next.is_some_and(|&p| p == self.pos || self.day_done);
                    if self.day_done && !from_rare {
                        return None;
                    }
                    if from_rare {
                        self.next_rare += 1;
                    }
                    self.reading = Some(from_rare);
                    from_rare
                }
            };
            let source = if from_rare {
                &mut self.rare
            } else {
                &mut self.day
            };
            match source.next_frame(frame) {
                None => {
                    self.reading = None;
                    self.day_done |= !from_rare;
                }
                Some(Err(e)) => {
                    self.failed = e.is_fatal();
                    return Some(Err(e));
                }
                Some(Ok(())) => {
                    self.reading = None;
                    if from_rare {
                        self.rare_at.push(self.pos);
                    }
                    frame.index = self.pos as u64;
                    frame.time_ms = frame_time_ms(frame.index, UDACITY_FPS);
                    self.pos += 1;
                    return Some(Ok(()));
                }
            }
        }
    }

    /// The day drive's: the camera the spliced frames interrupt.
    fn frame_size(&self) -> Option<(u32, u32)> {
        self.day.frame_size()
    }

    fn describe(&self) -> String {
        format!(
            "{} with {} spliced in",
            self.day.describe(),
            self.rare.describe()
        )
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.day.len_hint()? + self.rare.len_hint()?)
    }
}

/// The names of the files in `dir`.
fn file_names(dir: &Path) -> Result<HashSet<String>, String> {
    let err = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
    std::fs::read_dir(dir)
        .map_err(err)?
        .map(|e| Ok(e.map_err(err)?.file_name().to_string_lossy().into_owned()))
        .collect()
}

pub fn rare_recall(opts: &Options, out: &mut Out) -> Result<(), String> {
    let day_dir = data_dir(&opts.data, &format!("{UDACITY_DIR}/frames"))?;
    let rare_dir = data_dir(&opts.data, &format!("{RARE_DIR}/images"))?;
    let day = open_source(&day_dir, UDACITY_FPS)?;
    let rare = open_source(&rare_dir, UDACITY_FPS)?;
    let n_day = day.len_hint().unwrap_or(0);
    let n_rare = rare.len_hint().unwrap_or(0);
    if n_rare == 0 {
        return Err(format!("{}: no images", rare_dir.display()));
    }
    let positions = splice_positions(n_day, n_rare, opts.seed);
    let mut source = Spliced::new(day, rare, positions);
    eprintln!("part 2: replaying {} …", source.describe());
    let detected = detect_source(opts, &mut source, &format!("seed {}", opts.seed), 0)?;
    let rare_names = file_names(&rare_dir)?;
    if let Some(both) = file_names(&day_dir)?.intersection(&rare_names).next() {
        return Err(format!(
            "{both} is in both {} and {}: the spliced frames are told apart by name",
            day_dir.display(),
            rare_dir.display()
        ));
    }
    let mut kept = Vec::new();
    let mut embeddings = Vec::new();
    let mut scores: Vec<[f32; 3]> = Vec::new();
    // Threshold of every frame, for the rows of the rare ones.
    let mut thresholds = Vec::new();
    select_replay(opts, &detected.frames, None, |_, s| {
        kept.push(s.kept);
        embeddings.push(s.selector.embedding().to_vec());
        let sc = s.selection.decision.scores;
        scores.push([s.selection.uncertainty.value, sc.novelty, sc.value]);
        thresholds.push(sc.threshold);
    })?;
    // The spliced frames, by name (the cache does not replay the splice).
    let is_rare: Vec<bool> = detected
        .frames
        .iter()
        .map(|f| rare_names.contains(&f.name))
        .collect();
    let rare_rows: Vec<(usize, String, f32, bool)> = (0..kept.len())
        .filter(|&i| is_rare[i])
        .map(|i| (i, detected.frames[i].name.clone(), thresholds[i], kept[i]))
        .collect();
    let n = kept.len();
    let rare_idx: Vec<usize> = (0..n).filter(|&i| is_rare[i]).collect();
    let spliced = rare_idx.len();
    let k = kept.iter().filter(|k| **k).count();
    let share = |sel: &[usize]| {
        let hit = sel.iter().filter(|&&i| is_rare[i]).count();
        (hit, hit as f64 / spliced.max(1) as f64)
    };
    let ours: Vec<usize> = (0..n).filter(|&i| kept[i]).collect();
    let (ours_hit, ours_share) = share(&ours);
    let (uni_hit, uni_share) = share(&metrics::uniform_selection(n, k));
    let (kc_hit, kc_share) = share(&metrics::greedy_k_centre(&embeddings, k, 0));

    out.line("");
    out.line(format!(
        "== 2. Rare-frame recall: {spliced} night/rain frames of {RARE_DIR} spliced at seeded positions (seed {}) into {UDACITY_DIR} ({} day frames)",
        opts.seed,
        n - spliced
    ));
    let kept_ratio = k as f64 / n.max(1) as f64;
    out.line(format!(
        "  fresh pipeline at target {:.2}%: kept {k} of {n} ({:.2}%, {:+.0}% off target)",
        opts.ratio * 100.0,
        100.0 * kept_ratio,
        100.0 * (kept_ratio - opts.ratio) / opts.ratio
    ));
    out.line("  selection                    k   rare kept   share of rare");
    out.line(format!(
        "  {:<24} {:>5}   {:>3} / {:<3}  {:>9.1}%",
        "pipeline",
        k,
        ours_hit,
        spliced,
        ours_share * 100.0
    ));
    out.line(format!(
        "  {:<24} {:>5}   {:>9}  {:>9.1}%   (= k/n; target ratio {:.2}%)",
        "random (expected)",
        k,
        format!("{:.2}", k as f64 / n.max(1) as f64 * spliced as f64),
        k as f64 / n.max(1) as f64 * 100.0,
        opts.ratio * 100.0
    ));
    out.line(format!(
        "  {:<24} {:>5}   {:>3} / {:<3}  {:>9.1}%",
        "uniform in time",
        k,
        uni_hit,
        spliced,
        uni_share * 100.0
    ));
    out.line(format!(
        "  {:<24} {:>5}   {:>3} / {:<3}  {:>9.1}%   (offline, sees all frames)",
        "k-centre, embedding",
        k,
        kc_hit,
        spliced,
        kc_share * 100.0
    ));
    let random_share = k as f64 / n.max(1) as f64;
    out.line(format!(
        "  recall pipeline / random = {:.1}x",
        if random_share > 0.0 {
            ours_share / random_share
        } else {
            0.0
        }
    ));
    out.line("  spliced frames (pct = percentile among all frames of the sequence):");
    out.line(
        "     pos  name                     uncert (pct)  novelty (pct)   value (pct)  thresh",
    );
    let pct = |col: usize, v: f32| {
        100.0 * scores.iter().filter(|x| x[col] < v).count() as f64 / scores.len().max(1) as f64
    };
    for (index, name, threshold, stored) in rare_rows {
        let [u, nov, val] = scores[index];
        out.line(format!(
            "    {index:>4}  {name:<24} {u:>6.3} ({:>3.0})  {nov:>7.3} ({:>3.0})  {val:>6.3} ({:>3.0})  {threshold:>6.3}  {}",
            pct(0, u),
            pct(1, nov),
            pct(2, val),
            if stored { "KEPT" } else { "-" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesieve::run::{run_job, FrameHandler, FrameInfo, JobOptions, Stop, Tally};

    #[test]
    fn splice_positions_are_distinct_and_in_range() {
        let p = splice_positions(452, 12, 1);
        assert_eq!(p.len(), 12);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
        assert!(*p.last().unwrap() < 464);
        assert_eq!(p, splice_positions(452, 12, 1));
        assert_ne!(p, splice_positions(452, 12, 2));
    }

    /// Frames by name; a name starting with "bad" fails to decode, "fatal" ends the source.
    struct Named {
        names: Vec<String>,
        pos: usize,
    }

    fn named(names: &[&str]) -> Box<dyn FrameSource> {
        Box::new(Named {
            names: names.iter().map(|s| s.to_string()).collect(),
            pos: 0,
        })
    }

    impl FrameSource for Named {
        fn next_frame(&mut self, frame: &mut Frame) -> Option<Result<(), SourceError>> {
            let name = self.names.get(self.pos)?.clone();
            frame.index = self.pos as u64;
            frame.time_ms = 999;
            self.pos += 1;
            if name.starts_with("fatal") {
                self.pos = self.names.len();
                return Some(Err(SourceError::Header {
                    source_name: name,
                    message: "broken".into(),
                }));
            }
            if name.starts_with("bad") {
                return Some(Err(SourceError::ImageDecode {
                    path: name.into(),
                    index: frame.index,
                    message: "corrupt".into(),
                }));
            }
            frame.name = name;
            Some(Ok(()))
        }

        fn describe(&self) -> String {
            format!("{} named", self.names.len())
        }
    }

    /// The splicing loop the eval had before it used the job loop, kept as the reference.
    fn reference(
        mut day: Box<dyn FrameSource>,
        mut rare: Box<dyn FrameSource>,
        positions: &[usize],
    ) -> Vec<(usize, String, bool)> {
        // The eval's `next_frame`: skips frames that fail to decode; false at the end.
        fn next(source: &mut Box<dyn FrameSource>, frame: &mut Frame) -> bool {
            loop {
                match source.next_frame(frame) {
                    None => return false,
                    Some(Ok(())) => return true,
                    Some(Err(e)) => assert!(!e.is_fatal()),
                }
            }
        }
        let mut frame = Frame::new();
        let mut out = Vec::new();
        let mut pos = 0usize;
        let mut next_rare = positions.iter().peekable();
        let mut day_done = false;
        loop {
            let from_rare = next_rare.peek().is_some_and(|&&p| p == pos || day_done);
            if day_done && !from_rare {
                break;
            }
            let got = if from_rare {
                next_rare.next();
                next(&mut rare, &mut frame)
            } else {
                next(&mut day, &mut frame)
            };
            if !got {
                day_done |= !from_rare;
                continue;
            }
            out.push((pos, frame.name.clone(), from_rare));
            pos += 1;
        }
        out
    }

    #[derive(Default)]
    struct Seen(Vec<(u64, String, u64)>);

    impl FrameHandler for Seen {
        type Error = std::convert::Infallible;
        fn handle(
            &mut self,
            f: &Frame,
            info: &FrameInfo,
            _: &mut Tally,
        ) -> Result<(), Self::Error> {
            self.0.push((f.index, f.name.clone(), info.timestamp_ms));
            Ok(())
        }
    }

    /// Runs the spliced stream through the job loop: (position, name, rare) of each frame.
    fn spliced(day: &[&str], rare: &[&str], positions: &[usize]) -> Vec<(usize, String, bool)> {
        let mut source = Spliced::new(named(day), named(rare), positions.to_vec());
        let mut seen = Seen::default();
        let summary = run_job(&mut source, &mut seen, &JobOptions::default()).unwrap();
        assert!(matches!(summary.stop, Stop::EndOfInput));
        let bad = day
            .iter()
            .chain(rare)
            .filter(|n| n.starts_with("bad"))
            .count();
        assert_eq!(summary.failed as usize, bad);
        let rare_at = source.rare_positions();
        seen.0
            .into_iter()
            .enumerate()
            .map(|(i, (index, name, ts))| {
                assert_eq!((index, ts), (i as u64, i as u64 * 80));
                (i, name, rare_at.contains(&i))
            })
            .collect()
    }

    #[test]
    fn splices_like_the_old_loop() {
        let cases: &[(&[&str], &[&str], &[usize])] = &[
            // Plain: rare frames at their positions.
            (&["d0", "d1", "d2", "d3", "d4"], &["r0", "r1"], &[1, 4]),
            (&["d0", "d1"], &["r0", "r1"], &[0, 1]),
            (&["d0", "d1"], &["r0", "r1"], &[2, 3]),
            // Failed frames take no position.
            (&["d0", "bad", "d1", "d2"], &["bad", "r0", "r1"], &[1, 3]),
            (&["bad", "bad", "d0"], &["r0", "bad"], &[0, 2]),
            // The day frames run out early: the remaining rare ones follow.
            (&["d0"], &["r0", "r1"], &[2, 3]),
            (&["d0", "bad", "bad"], &["r0", "r1", "r2"], &[0, 4, 5]),
            // The rare frames run out early: their positions are used up.
            (&["d0", "d1", "d2"], &["r0"], &[1, 2]),
            (&["d0", "d1", "d2"], &["bad", "r0"], &[0, 1, 3]),
            (&[], &["r0", "r1"], &[0, 1]),
            (&["d0", "d1"], &[], &[]),
        ];
        for &(day, rare, positions) in cases {
            let want = reference(named(day), named(rare), positions);
            assert_eq!(
                spliced(day, rare, positions),
                want,
                "{day:?} {rare:?} {positions:?}"
            );
        }
        let got = spliced(&["d0", "bad", "d1", "d2"], &["bad", "r0", "r1"], &[1, 3]);
        let names: Vec<&str> = got.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names, ["d0", "r0", "d1", "r1", "d2"]);
        assert_eq!(
            got.iter().filter(|g| g.2).map(|g| g.0).collect::<Vec<_>>(),
            [1, 3]
        );
    }

    #[test]
    fn a_fatal_error_ends_the_spliced_stream() {
        let mut source = Spliced::new(named(&["d0", "fatal", "d1"]), named(&["r0"]), vec![3]);
        let s = run_job(&mut source, &mut Seen::default(), &JobOptions::default()).unwrap();
        assert!(matches!(s.stop, Stop::SourceFailed(_)));
        assert_eq!(s.frames, 1);
        assert!(source.next_frame(&mut Frame::new()).is_none());
    }
}
