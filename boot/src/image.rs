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

/// A copy of `kernel` without debug information, next to it, made with the
/// toolchain's `llvm-objcopy` (the `llvm-tools` component). The bootloader
/// reads the whole ELF through BIOS disk calls, which are slow under TCG: a
/// 7.7 MB debug kernel takes seconds longer to load than the 0.6 MB
/// stripped one. The unstripped ELF stays for gdb and symbolizing
/// backtraces. Falls back to the original if objcopy is unavailable.
fn stripped(kernel: &Path) -> PathBuf {
    let out = kernel.with_file_name("kernel.stripped");
    if mtime(&out).is_some_and(|t| Some(t) >= mtime(kernel)) {
        return out;
    }
    let objcopy = crate::toolchain::llvm_tool("llvm-objcopy");
    // Write under a unique name and rename: concurrent callers (BIOS and
    // UEFI images built by parallel tests) never see a half-written file.
    let tmp = out.with_extension(format!(
        "{}.{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    let ok = objcopy.is_some_and(|oc| {
        std::process::Command::new(oc)
            .arg("--strip-debug")
            .arg(kernel)
            .arg(&tmp)
            .status()
            .is_ok_and(|s| s.success())
    });
    if ok && fs::rename(&tmp, &out).is_ok() {
        out
    } else {
        let _ = fs::remove_file(&tmp);
        kernel.to_path_buf()
    }
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
    let elf = stripped(kernel);
    let r = match firmware {
        Firmware::Bios => bootloader::BiosBoot::new(&elf).create_disk_image(&tmp),
        Firmware::Uefi => bootloader::UefiBoot::new(&elf).create_disk_image(&tmp),
    };
    r.map_err(|e| io::Error::other(format!("creating {name}: {e:#}")))?;
    fs::rename(&tmp, &image)?;
    Ok(image)
}
