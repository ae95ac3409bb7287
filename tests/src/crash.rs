//! The host's half of the crash-consistency check of `sync`
//! ([`contract::crash`] explains it): read QEMU's `blklogwrites` log
//! (dm-log-writes format), replay it onto the starting image at many
//! crash points, and check each replayed state against what the returned
//! syncs covered.
//!
//! The log: sector 0 is a superblock (magic, version, entries, sector
//! size); from sector 1 on, each entry is one sector (`sector`,
//! `nr_sectors`, `flags`, `data_len`) followed by the data of a write.
//! QEMU logs a request once it has completed on the image, so the log is
//! in completion order, and a flush's entry comes after every write the
//! guest saw complete before it issued the flush. QEMU updates the
//! superblock's entry count only at a flush; the entries after it are read
//! too (they are complete by the time QEMU has exited).

use std::collections::{BTreeMap, HashMap};

use boot::contract::{
    crash::{FILE_PAGES, Line, RECORD_BLOCK, RECORD_FILE, RECORDS, page_block},
    disk::BLOCK_SIZE,
    rng::Rng,
    torture,
};

const MAGIC: u64 = 0x6a73_6677_7368_72;
const FLUSH: u64 = 1;
const DISCARD: u64 = 4;
const KNOWN_FLAGS: u64 = 0xf;

/// One logged request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Blocks from `block` on, whole (the kernel writes whole blocks).
    Write {
        block: u64,
        data: Vec<u8>,
    },
    Flush,
    /// A discard, or a write that is not whole blocks (neither happens
    /// here; kept so that positions stay right).
    Other,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The entries of a dm-log-writes log (module docs).
pub fn parse_log(log: &[u8]) -> Result<Vec<Entry>, String> {
    if log.len() < 512 {
        return Ok(Vec::new());
    }
    // QEMU writes the superblock at the first flush; a log of a run that
    // never flushed has none yet, and its entries start at sector 1 of the
    // default 512 bytes (the size the runner asks for).
    let (version, sector) = match u64_at(log, 0) {
        MAGIC => (
            u64_at(log, 8),
            u32::from_le_bytes(log[24..28].try_into().expect("4 bytes")) as usize,
        ),
        0 if log[..512].iter().all(|&b| b == 0) => (1, 512),
        _ => return Err("not a dm-log-writes log (no superblock magic)".into()),
    };
    if version != 1 || !sector.is_power_of_two() || sector < 512 {
        return Err(format!(
            "log version {version}, sector size {sector}: unsupported"
        ));
    }
    let mut out = Vec::new();
    let mut pos = sector;
    while pos + sector <= log.len() {
        let (start, n, flags) = (
            u64_at(log, pos),
            u64_at(log, pos + 8),
            u64_at(log, pos + 16),
        );
        if flags & !KNOWN_FLAGS != 0 || (flags == 0 && n == 0) {
            break;
        }
        pos += sector;
        if flags & DISCARD != 0 {
            out.push(Entry::Other);
            continue;
        }
        let len = n as usize * sector;
        if pos + len > log.len() {
            return Err(format!("entry {} runs past the end of the log", out.len()));
        }
        let bytes = start as usize * sector;
        if flags & FLUSH != 0 && n == 0 {
            out.push(Entry::Flush);
        } else if bytes % BLOCK_SIZE == 0 && len % BLOCK_SIZE == 0 && len > 0 {
            out.push(Entry::Write {
                block: (bytes / BLOCK_SIZE) as u64,
                data: log[pos..pos + len].to_vec(),
            });
        } else {
            out.push(Entry::Other);
        }
        pos += len;
    }
    Ok(out)
}

/// What the kernel printed: the run and, per sync, what it covered.
#[derive(Debug, Default)]
pub struct Syncs {
    pub run: u64,
    pub pages: u64,
    /// Sync `k` -> the generation each page must have at least.
    pub covered: BTreeMap<u64, Vec<u64>>,
    pub ended: bool,
}

/// The check's lines of a serial log.
pub fn syncs(lines: &[String]) -> Syncs {
    let mut s = Syncs::default();
    for l in lines {
        match Line::parse(l) {
            Some(Line::Begin { run, pages }) => {
                s.run = run;
                s.pages = pages;
            }
            Some(Line::Covered { k, gens }) => {
                let g = Line::gens(gens).map(|g| g.unwrap_or(u64::MAX)).collect();
                s.covered.insert(k, g);
            }
            Some(Line::End { .. }) => s.ended = true,
            None => {}
        }
    }
    s
}

/// What the replay found.
#[derive(Debug, Default)]
pub struct Report {
    pub entries: usize,
    pub writes: usize,
    pub flushes: usize,
    /// Records found in the log (syncs placed in it).
    pub records: usize,
    /// Crash states checked: at every flush, at every record, and at
    /// random points with random subsets of the writes after the last
    /// flush.
    pub points: usize,
    /// The first problems, each naming the crash point and the page.
    pub problems: Vec<String>,
    /// All problems counted.
    pub problem_count: usize,
}

/// Replays `entries` and checks crash states against `s` (module docs):
/// `random_points` random points on top of every flush and record.
pub fn check(entries: &[Entry], s: &Syncs, random_points: usize, seed: u64) -> Report {
    let mut r = Report {
        entries: entries.len(),
        ..Report::default()
    };
    // Where each sync's record and each flush are in the log.
    let mut record_at: Vec<(usize, u64)> = Vec::new();
    let mut flush_at: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match e {
            Entry::Flush => flush_at.push(i),
            Entry::Write { block, data } => {
                r.writes += 1;
                for (j, b) in data.chunks_exact(BLOCK_SIZE).enumerate() {
                    let blk = block + j as u64;
                    if (RECORD_BLOCK..RECORD_BLOCK + RECORDS).contains(&blk)
                        && let Some(h) = torture::header(b)
                        && h.run == s.run
                        && h.file == RECORD_FILE
                    {
                        record_at.push((i, h.index));
                    }
                }
            }
            Entry::Other => {}
        }
    }
    r.flushes = flush_at.len();
    r.records = record_at.len();
    let mut points: Vec<(usize, bool)> = flush_at
        .iter()
        .map(|&f| (f + 1, false))
        .chain(record_at.iter().map(|&(i, _)| (i + 1, false)))
        .collect();
    let mut rng = Rng::new(seed);
    for _ in 0..random_points {
        points.push(((rng.next() % (entries.len() as u64 + 1)) as usize, true));
    }
    for (p, subset) in points {
        r.points += 1;
        check_point(
            entries,
            s,
            &record_at,
            p,
            subset.then_some(&mut rng),
            &mut r,
        );
    }
    r
}

/// One crash state: the log's first `p` entries happened; what reached
/// the medium is every write before the last flush among them, plus
/// (with `rng`) a random subset of the writes after it.
fn check_point(
    entries: &[Entry],
    s: &Syncs,
    record_at: &[(usize, u64)],
    p: usize,
    mut rng: Option<&mut Rng>,
    r: &mut Report,
) {
    let durable = entries[..p]
        .iter()
        .rposition(|e| *e == Entry::Flush)
        .map_or(0, |f| f + 1);
    let mut disk: HashMap<u64, &[u8]> = HashMap::new();
    for (i, e) in entries[..p].iter().enumerate() {
        if let Entry::Write { block, data } = e {
            let keep = i < durable || rng.as_mut().is_some_and(|g| g.next() % 2 == 0);
            if keep {
                for (j, b) in data.chunks_exact(BLOCK_SIZE).enumerate() {
                    disk.insert(block + j as u64, b);
                }
            }
        }
    }
    // Every sync whose record is in the first `p` entries had returned.
    let Some(k) = record_at
        .iter()
        .filter(|(i, _)| *i < p)
        .map(|&(_, k)| k)
        .max()
    else {
        return;
    };
    let Some(need) = s.covered.get(&k) else {
        r.problem_count += 1;
        r.problems.push(format!(
            "record {k} in the log, but the kernel printed no coverage for sync {k}"
        ));
        return;
    };
    for (index, &want) in need.iter().enumerate().take(FILE_PAGES as usize) {
        let block = page_block(index as u64);
        let got = disk.get(&block).copied();
        let problem = match got.and_then(torture::header) {
            None if want == 0 => None,
            None => Some(format!("missing (wanted generation {want} or newer)")),
            Some(h) => {
                let b = got.expect("a header came from a block");
                if torture::checksum(b) != h.checksum {
                    Some(format!("torn (generation {})", h.generation))
                } else if h.run != s.run || h.file != 0 || h.index != index as u64 {
                    Some(format!(
                        "foreign (run {:#x} file {} page {})",
                        h.run, h.file, h.index
                    ))
                } else if h.generation < want {
                    Some(format!(
                        "older: generation {} where sync {k} covered {want}",
                        h.generation
                    ))
                } else {
                    None
                }
            }
        };
        if let Some(what) = problem {
            r.problem_count += 1;
            if r.problems.len() < 8 {
                r.problems.push(format!(
                    "crash after log entry {p} (durable through entry {durable}, sync {k} returned): page {index}: {what}"
                ));
            }
        }
    }
}
