//! Bootable disk images from the kernel ELF, through the `bootloader` crate.
//! An image is rebuilt only when the kernel ELF is newer than it.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::SystemTime,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Returns the image for `kernel`, building it if it is missing or older
/// than the kernel.
pub fn disk_image(kernel: &Path, firmware: Firmware) -> io::Result<PathBuf> {
    let name = match firmware {
        Firmware::Bios => "pcs-bios.img",
        Firmware::Uefi => "pcs-uefi.img",
    };
    let image = kernel.with_file_name(name);
    let kernel_time = mtime(kernel)
        .ok_or_else(|| io::Error::other(format!("no kernel at {}", kernel.display())))?;
    if mtime(&image).is_some_and(|t| t >= kernel_time) {
        return Ok(image);
    }
    // Build to a temporary name and rename, so a crash mid-build never
    // leaves a half-written image that looks up to date.
    // The name is unique per process and call, so concurrent builders (test
    // threads, parallel test binaries) never write the same file.
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = image.with_extension(format!("img.{}.{seq}.tmp", std::process::id()));
    let r = match firmware {
        Firmware::Bios => bootloader::BiosBoot::new(kernel).create_disk_image(&tmp),
        Firmware::Uefi => bootloader::UefiBoot::new(kernel).create_disk_image(&tmp),
    };
    r.map_err(|e| io::Error::other(format!("creating {name}: {e:#}")))?;
    fs::rename(&tmp, &image)?;
    Ok(image)
}
