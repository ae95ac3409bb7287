//! The virtio-blk disk a run attaches: which raw image, and making it.
//!
//! Mental model: a run gets at most one data disk besides its boot image,
//! a raw file that QEMU presents as a `virtio-blk-pci` device. Either a
//! fresh image in the run's own log directory (the default: parallel test
//! boots never share one, and nothing carries over), or an image at a
//! given path that is created (sparse) only when missing and so persists
//! across runs (`cargo xtask run` uses `target/disk.img`), or none.

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

/// Size of a disk when nobody says: 64 MiB.
pub const DEFAULT_BYTES: u64 = 64 << 20;
/// QEMU's id for the drive (`-drive id=`).
pub const DRIVE_ID: &str = "pcsdisk";
/// Disk sizes are whole kernel blocks.
pub const BLOCK: u64 = 4096;

/// The data disk of a run (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disk {
    /// No virtio disk: the kernel reports it absent.
    None,
    /// A new sparse image of this many bytes in the run's directory.
    Fresh { bytes: u64 },
    /// The image at `path`, created sparse with `bytes` if missing; an
    /// existing one must have that size.
    Image { path: PathBuf, bytes: u64 },
}

impl Disk {
    /// A fresh image of `bytes` in the run directory.
    pub fn fresh(bytes: u64) -> Disk {
        Disk::Fresh { bytes }
    }

    /// The persistent image at `path` (`bytes` if it must be created).
    pub fn at(path: impl Into<PathBuf>, bytes: u64) -> Disk {
        Disk::Image {
            path: path.into(),
            bytes,
        }
    }

    /// Creates the image if needed and returns its path (`None`: no disk).
    pub(crate) fn prepare(&self, run_dir: &Path) -> io::Result<Option<PathBuf>> {
        let (path, bytes) = match self {
            Disk::None => return Ok(None),
            Disk::Fresh { bytes } => (run_dir.join("disk.img"), *bytes),
            Disk::Image { path, bytes } => (path.clone(), *bytes),
        };
        check_size(bytes).map_err(io::Error::other)?;
        match fs::metadata(&path) {
            Ok(m) if m.len() == bytes => {}
            Ok(m) => {
                return Err(io::Error::other(format!(
                    "disk image {} is {} but {} was asked for; delete it to start over, or ask for its size",
                    path.display(),
                    Size(m.len()),
                    Size(bytes)
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir)?;
                }
                // set_len on a new file makes it sparse: no blocks are
                // written until the guest writes them.
                fs::File::create_new(&path)?.set_len(bytes)?;
            }
            Err(e) => return Err(e),
        }
        Ok(Some(path))
    }
}

impl fmt::Display for Disk {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Disk::None => f.write_str("no disk"),
            Disk::Fresh { bytes } => write!(f, "fresh {} disk", Size(*bytes)),
            Disk::Image { path, bytes } => write!(f, "{} disk {}", Size(*bytes), path.display()),
        }
    }
}

/// A QEMU block driver between the guest's disk and its image file (the
/// virtio device sees the same disk either way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// QEMU's `blklogwrites`: every write and flush that reaches the image
    /// is also logged, with its data, to `log` in dm-log-writes format
    /// (the crash-consistency check, `tests/tests/crash.rs`).
    LogWrites { log: PathBuf },
    /// QEMU's `blkdebug` under the raw format: the rules in the file
    /// `rules` inject errors (`EIO`) into chosen requests, which the guest
    /// sees as device errors.
    Debug { rules: PathBuf },
}

impl Filter {
    /// Makes what QEMU expects to find: an empty log file (QEMU opens it,
    /// it does not create it).
    pub(crate) fn prepare(&self) -> io::Result<()> {
        if let Filter::LogWrites { log } = self {
            fs::File::create(log)?;
        }
        Ok(())
    }

    /// The `-drive` option string for an image at `image` behind this
    /// filter, with id `id`.
    pub fn drive(&self, image: &Path, id: &str) -> String {
        match self {
            Filter::LogWrites { log } => format!(
                "if=none,id={id},driver=blklogwrites,file.driver=file,file.filename={},log.driver=file,log.filename={},log-sector-size=512",
                image.display(),
                log.display()
            ),
            Filter::Debug { rules } => format!(
                "if=none,id={id},driver=raw,file.driver=blkdebug,file.config={},file.image.driver=file,file.image.filename={}",
                rules.display(),
                image.display()
            ),
        }
    }
}

/// Bytes as `64M`-style text when exact.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
            if self.0 >= 1 << shift && self.0 % (1 << shift) == 0 {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

/// A disk size must be a positive number of whole 4 KiB blocks, at most
/// 1 TiB.
fn check_size(bytes: u64) -> Result<(), String> {
    if bytes == 0 || bytes % BLOCK != 0 || bytes > 1 << 40 {
        return Err(format!(
            "disk size {bytes} bytes: must be a positive multiple of {BLOCK} bytes, at most 1T"
        ));
    }
    Ok(())
}

/// Parses a size: a number with an optional `K`, `M`, `G` or `T` suffix
/// (powers of 1024), e.g. `64M`, `1G`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(format!(
                        "disk size '{s}': unknown unit '{c}' (K, M, G or T)"
                    ));
                }
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("disk size '{s}': expected a number with K, M, G or T, e.g. 64M"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("disk size '{s}' is too large"))?;
    check_size(bytes).map(|()| bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("8K"), Ok(8192));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in [
            "",
            "M",
            "0",
            "100",
            "1X",
            "-1M",
            "2T",
            "99999999999999999999G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(Size(64 << 20).to_string(), "64M");
        assert_eq!(Size(5000).to_string(), "5000 bytes");
    }

    #[test]
    fn images_are_made_sparse_once_and_sizes_checked() {
        let dir = std::env::temp_dir().join(format!("pcs-disk-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let fresh = Disk::fresh(1 << 20).prepare(&dir).unwrap().unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().len(), 1 << 20);
        let path = dir.join("sub/keep.img");
        let d = Disk::at(&path, 8192);
        assert_eq!(d.prepare(&dir).unwrap(), Some(path.clone()));
        fs::write(&path, [7u8; 8192]).unwrap();
        // Kept as it is on the next run.
        d.prepare(&dir).unwrap();
        assert_eq!(fs::read(&path).unwrap(), [7u8; 8192]);
        let e = Disk::at(&path, 4096).prepare(&dir).unwrap_err();
        assert!(e.to_string().contains("is 8K but 4K was asked for"), "{e}");
        assert_eq!(Disk::None.prepare(&dir).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
