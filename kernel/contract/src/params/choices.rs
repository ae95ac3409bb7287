//! The values of the choice keys, each list written once, by the type that
//! owns it. The kernel's own choices are defined here, since the host and
//! the kernel both name them: [`Mode`] (`mode=`), [`Crash`] (`crash=`),
//! [`Persist`] (`blk_persist=`) and [`LogLevel`] (`loglevel=`). The
//! protocol's come from `pagesync`: [`BUG_CHOICES`] (`bug=`: `none` and
//! every [`pagesync::Bug`]), [`GUP_CHOICES`] (`gup=`: every
//! [`pagesync::PinScheme`]) and [`PROTOCOL_CHOICES`] (`protocol=`: every
//! registered [`pagesync::Protocol`]). The table ([`super::TABLE`]) takes its lists
//! and defaults from here, and the kernel its typed values: a new choice is
//! one new variant.

use pagesync::{Bug, PinScheme, Protocol};

/// An enum whose variants are a key's choices: `ALL` in table order,
/// `name()`, `NAMES` (the table's list) and `from_name`.
macro_rules! choices {
    ($(#[$meta:meta])* $vis:vis enum $ty:ident { $($(#[$doc:meta])* $variant:ident = $name:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $ty {
            $($(#[$doc])* $variant,)*
        }

        impl $ty {
            /// Every value, in the order of the key's choices.
            pub const ALL: [$ty; [$($ty::$variant),*].len()] = [$($ty::$variant),*];
            /// The key's choices, as written.
            pub const NAMES: [&'static str; [$($ty::$variant),*].len()] = [$($name),*];

            /// The name as written in the parameter string.
            pub const fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }

            /// The value called `name`.
            pub fn from_name(name: &str) -> Option<$ty> {
                Self::ALL.into_iter().find(|v| v.name() == name)
            }
        }
    };
}

choices! {
    /// `mode=`: what the kernel runs after it has booted.
    pub enum Mode {
        /// Run the in-kernel test suites and exit with their verdict.
        Test = "test",
        /// Run the benchmarks and print `BENCH` lines.
        Bench = "bench",
        /// Boot, report, and exit successfully.
        Idle = "idle",
    }
}

choices! {
    /// `crash=`: a deliberate crash, used by the host tests to prove that
    /// each kind of failure is detected. Runs inside the test case
    /// `boot.deliberate_crash`.
    pub enum Crash {
        None = "none",
        Panic = "panic",
        PageFault = "pagefault",
        Divide = "divide",
        StackOverflow = "stackoverflow",
        Hang = "hang",
        /// Loads an empty IDT and raises an exception: a triple fault,
        /// which QEMU (`-no-reboot`) reports as a reset (see
        /// `crate::exit`).
        TripleFault = "triplefault",
        /// A panic on the last application processor, via a function-call
        /// IPI.
        ApPanic = "appanic",
        /// Frees one frame twice through the public free path: the frame
        /// allocator must panic with a dump of the descriptor.
        DoubleFree = "doublefree",
        /// Ends writeback on a page whose reference count is 0: pagesync
        /// must stop the kernel with a report naming the page, not return
        /// and leave PG_writeback set with its waiters asleep.
        WritebackUnreferenced = "writeback-unreferenced",
        /// A thread running in an address space writes to a read-only
        /// region: the page-fault handler refuses it and the fault is
        /// reported as fatal with the region, not retried for ever.
        VmReadonlyWrite = "vm-readonly-write",
        /// A case that fails and leaves a thread asleep for good (and one in
        /// a killable wait, which the framework cancels): the run must stop
        /// after it, name what it left, and skip the rest, not hang in the
        /// next case.
        Wedge = "wedge",
        /// Every CPU spins with interrupts off: no watchdog can speak, the
        /// console goes silent, and the host must diagnose the kernel from
        /// QEMU's own view of every vCPU.
        AllCpusStuck = "all-cpus-stuck",
        /// Takes two locks in one order and then the other (debug builds):
        /// the lock-order check must panic naming both orders' sites.
        LockInversion = "lock-inversion",
    }
}

choices! {
    /// `blk_persist=`: the persistence check's half for this boot.
    pub enum Persist {
        Off = "off",
        /// Write the pattern.
        Write = "write",
        /// Check that the disk holds the pattern.
        Check = "check",
    }
}

choices! {
    /// `loglevel=`: the most verbose console level printed (the kernel
    /// maps it to its logger's filter).
    pub enum LogLevel {
        Off = "off",
        Error = "error",
        Warn = "warn",
        Info = "info",
        Debug = "debug",
        Trace = "trace",
    }
}

/// `bug=`: `none`, then every known-bad variant's name, from
/// [`pagesync::Bug`].
pub const BUG_CHOICES: [&str; Bug::ALL.len() + 1] = {
    let mut out = ["none"; Bug::ALL.len() + 1];
    let mut i = 0;
    while i < Bug::ALL.len() {
        out[i + 1] = Bug::ALL[i].name();
        i += 1;
    }
    out
};

/// `gup=`: every pin scheme's name, from [`pagesync::PinScheme`].
pub const GUP_CHOICES: [&str; PinScheme::ALL.len()] = {
    let mut out = [""; PinScheme::ALL.len()];
    let mut i = 0;
    while i < PinScheme::ALL.len() {
        out[i] = PinScheme::ALL[i].name();
        i += 1;
    }
    out
};

/// `bug=`'s value: `none`, or the variant called `name`.
pub fn bug(name: &str) -> Option<Bug> {
    Bug::ALL.into_iter().find(|b| b.name() == name)
}

/// `protocol=`: every registered page-lock protocol's name, from
/// [`pagesync::Protocol`].
pub const PROTOCOL_CHOICES: [&str; Protocol::ALL.len()] = Protocol::NAMES;

/// `protocol=`'s value.
pub fn protocol(name: &str) -> Option<Protocol> {
    Protocol::from_name(name)
}

/// `gup=`'s value.
pub fn pin_scheme(name: &str) -> Option<PinScheme> {
    PinScheme::ALL.into_iter().find(|s| s.name() == name)
}
