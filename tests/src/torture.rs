//! The host's half of the writeback torture's verification: read the
//! manifest the kernel printed, then the disk image file QEMU wrote, and
//! say for every page whether its block holds exactly the manifest's
//! version (format and classification: `boot::contract::torture`).

use std::{collections::BTreeMap, fmt};

use boot::contract::{
    disk::{BLOCK_SIZE, torture_block},
    torture::{Entry, Finding, Line, check_block},
};

/// One torture run's manifest, as printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub case: String,
    pub run: u64,
    pub first_block: u64,
    pub files: u64,
    pub file_pages: u64,
    /// Pages the run had (each must have an entry).
    pub pages: u64,
    /// Pages 0..pinned of file 0 were pinned for DMA.
    pub pinned: u64,
    pub entries: Vec<Entry>,
    /// Final writes retried (from the end line); `None`: no end line.
    pub retries: Option<u64>,
}

/// Every manifest in a serial log, in order.
pub fn manifests(lines: &[String]) -> Vec<Manifest> {
    let mut out: Vec<Manifest> = Vec::new();
    for l in lines {
        match Line::parse(l) {
            Some(Line::Begin {
                case,
                run,
                first_block,
                files,
                file_pages,
                pages,
                pinned,
            }) => out.push(Manifest {
                case: case.to_string(),
                run,
                first_block,
                files,
                file_pages,
                pages,
                pinned,
                entries: Vec::new(),
                retries: None,
            }),
            Some(Line::Page(e)) => {
                if let Some(m) = out.last_mut().filter(|m| m.retries.is_none()) {
                    m.entries.push(e);
                }
            }
            Some(Line::End { retries, .. }) => {
                if let Some(m) = out.last_mut() {
                    m.retries = Some(retries);
                }
            }
            None => {}
        }
    }
    out
}

/// What the image holds compared with one manifest.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Blocks checked.
    pub checked: usize,
    /// How many blocks of each kind other than `same`, and of those, how
    /// many are pinned pages.
    pub findings: BTreeMap<&'static str, (usize, usize)>,
    /// The first few bad blocks, described.
    pub examples: Vec<String>,
    /// Problems of the manifest itself: entries missing or repeated, no
    /// end line.
    pub manifest_problems: Vec<String>,
}

impl Verdict {
    /// Every block holds the manifest's version and the manifest is whole.
    pub fn clean(&self) -> bool {
        self.findings.is_empty() && self.manifest_problems.is_empty()
    }

    /// Bad blocks that are not pinned pages.
    pub fn unpinned_bad(&self) -> usize {
        self.findings.values().map(|(n, pinned)| n - pinned).sum()
    }

    /// Bad blocks.
    pub fn bad(&self) -> usize {
        self.findings.values().map(|(n, _)| n).sum()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} blocks checked: ", self.checked)?;
        if self.findings.is_empty() {
            write!(f, "all hold the manifest's version")?;
        } else {
            let kinds: Vec<String> = self
                .findings
                .iter()
                .map(|(k, (n, p))| format!("{n} {k} ({p} of them pinned pages)"))
                .collect();
            write!(f, "{}", kinds.join(", "))?;
        }
        for p in &self.manifest_problems {
            write!(f, "; manifest: {p}")?;
        }
        for e in &self.examples {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Checks every entry of `m` against its block in `image` (the whole disk
/// image file): no torn page, no older (lost) or newer version, nothing
/// missing; and the manifest itself names every page once.
pub fn check_image(image: &[u8], m: &Manifest) -> Verdict {
    let mut v = Verdict::default();
    if m.retries.is_none() {
        v.manifest_problems.push("no end line".into());
    }
    if m.entries.len() as u64 != m.pages {
        v.manifest_problems
            .push(format!("{} entries for {} pages", m.entries.len(), m.pages));
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in &m.entries {
        if !seen.insert((e.file, e.index)) {
            v.manifest_problems
                .push(format!("file {} page {} listed twice", e.file, e.index));
        }
        if e.file >= m.files || e.index >= m.file_pages {
            v.manifest_problems.push(format!(
                "file {} page {} is outside the layout",
                e.file, e.index
            ));
            continue;
        }
        let block = torture_block(m.first_block, m.file_pages, e.file, e.index);
        let at = block as usize * BLOCK_SIZE;
        let finding = match image.get(at..at + BLOCK_SIZE) {
            Some(data) => check_block(data, e, m.run),
            None => Finding::Missing,
        };
        v.checked += 1;
        if finding == Finding::Same {
            continue;
        }
        let pinned = e.file == 0 && e.index < m.pinned;
        let slot = v.findings.entry(finding.name()).or_default();
        slot.0 += 1;
        slot.1 += usize::from(pinned);
        if v.examples.len() < 8 {
            v.examples.push(format!(
                "block {block} (file {} page {}{}): manifest generation {}, disk {:?}",
                e.file,
                e.index,
                if pinned { ", pinned" } else { "" },
                e.generation,
                finding
            ));
        }
    }
    v
}
