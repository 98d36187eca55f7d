//! The `vxspan` command: a software packet broker. This file is only the command line; the
//! commands live in the library (`src/lib.rs`).

use vxspan::control::client;
use vxspan::{blast, check, daemon, gen, lab, replay, top};

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// `vxspan --version`: version, git revision and the datapaths built in.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("VXSPAN_GIT_REV"),
    "; datapaths: xdp, afxdp, afpacket; offline: replay)"
);

#[derive(Parser)]
#[command(
    name = "vxspan",
    version,
    long_version = LONG_VERSION,
    about = "Software packet broker: select mirrored traffic by VLAN and tcpdump filter, deliver copies, count every drop"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration and print the compiled plan (exit 0 valid, 2 invalid).
    Check {
        config: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a configuration offline: inputs from capture files, outputs to capture files.
    Replay {
        config: PathBuf,
        /// NAME=FILE: feed input NAME from a pcap / pcapng file (repeatable).
        #[arg(short = 'i', long = "input", value_name = "NAME=FILE", required = true)]
        inputs: Vec<String>,
        /// NAME=FILE: write output NAME to a file (.pcapng: pcapng, otherwise pcap with
        /// nanosecond timestamps). Outputs not named are counted but not written.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "NAME=FILE",
            conflicts_with = "out_dir"
        )]
        outputs: Vec<String>,
        /// Write every output to DIR/NAME.pcap.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Print the counters as JSON.
        #[arg(long)]
        json: bool,
        /// The key of the flow and dedup hashes (balancing, flow sampling, dedup), 32 hex
        /// digits. Default: the fixed replay key 76787370616e2d7265706c61792d6b31
        /// ("vxspan-replay-k1"), whatever the configuration's hash_key_file says, so replays
        /// are reproducible; give the live key to see what the daemon did.
        #[arg(long, value_name = "HEX")]
        hash_key: Option<String>,
    },
    /// Run live: forward between Linux interfaces (AF_PACKET). SIGHUP or `vxspan reload`
    /// reloads the configuration; SIGINT / SIGTERM stop and print the counters.
    Run {
        config: PathBuf,
        /// auto | xdp | afxdp | afpacket. xdp: the kernel tier runs every (input, VLAN) group
        /// it can, the others run in userspace (AF_XDP, else AF_PACKET); afxdp: every group in
        /// userspace through AF_XDP; auto: xdp if the program loads, else afpacket.
        #[arg(long, default_value = "auto")]
        datapath: String,
        /// Userspace workers (threads): auto (one per CPU this process may run on, at most 8)
        /// or a number from 1 to 64. Each AF_PACKET input is shared by the workers through a
        /// fanout group (by flow hash).
        #[arg(long, default_value = "auto")]
        workers: String,
        /// auto | native | generic: where the XDP program runs [default: xdp_mode, else
        /// native, or generic when an output is a veth].
        #[arg(long, default_value = "auto")]
        xdp_mode: String,
        /// auto | afpacket | afxdp: how output interfaces send. afpacket: AF_PACKET batches
        /// (sendmmsg); afxdp: AF_XDP TX rings, zero-copy where the driver allows, else copy
        /// mode (2 MiB of UMEM per output and TX queue); auto: afxdp with --datapath afxdp,
        /// afpacket otherwise.
        #[arg(long, default_value = "auto")]
        transmit: String,
        /// The control socket [default: management.control, else /run/vxspan/control.sock].
        #[arg(long)]
        control: Option<PathBuf>,
        /// When started as root, switch to this user keeping only the capabilities needed
        /// [default: management.user, else stay root].
        #[arg(long)]
        user: Option<String>,
        /// Log filter: error, warn, info, debug, trace (or tracing directives); the VXSPAN_LOG
        /// environment variable wins.
        #[arg(long, default_value = "info")]
        log_level: String,
        /// Log format on stderr.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
    /// Stream the frames a running instance forwards, as pcapng (e.g. `-w - | tcpdump -r -`).
    Capture {
        #[arg(long, default_value = daemon::DEFAULT_CONTROL)]
        control: PathBuf,
        /// Only the frames this rule forwards.
        #[arg(long)]
        rule: Option<String>,
        /// Where to write: a file, or - for standard output.
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the vxspan(8) manual page (roff) to standard output.
    Manpage,
    /// Print shell completions to standard output (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the counters of a running instance.
    Stats {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = daemon::DEFAULT_CONTROL)]
        control: PathBuf,
    },
    /// The running instance's topology as JSON: datapath, ports and link states, each (input,
    /// VLAN) group with the tier it runs in and why, frames per tier, memory and CPU.
    Status {
        #[arg(long, default_value = daemon::DEFAULT_CONTROL)]
        control: PathBuf,
    },
    /// A live dashboard of a running instance: ports and their VLAN mappings, an 800-second
    /// chart per port or VLAN, rates, rules, drop reasons, tunnels, CPU and memory.
    Top {
        #[arg(long, default_value = daemon::DEFAULT_CONTROL)]
        control: PathBuf,
        /// Sampling interval in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Validate and apply the configuration file of a running instance again.
    Reload {
        #[arg(long, default_value = daemon::DEFAULT_CONTROL)]
        control: PathBuf,
    },
    /// Restart a running instance in place, keeping its kernel tier forwarding: it executes its
    /// binary again (an upgraded one, if the file was replaced) in the same process, hands the
    /// XDP attachments and counters over, and this waits until the new image answers.
    Restart {
        #[arg(long, default_value = daemon::DEFAULT_CONTROL)]
        control: PathBuf,
    },
    /// Replay the VxSPAN example configuration on a built-in capture and show what went where.
    Demo {
        /// Frames to generate.
        #[arg(long, default_value_t = 2000)]
        count: u64,
    },
    /// Build a throw-away namespace with veth pairs, run VxSPAN's example configuration on it
    /// live, push the demo's traffic mix through it and show what went where (needs root).
    Lab {
        /// Frames to send into each input.
        #[arg(long, default_value_t = 2000)]
        count: u64,
    },
    /// Write a synthetic capture: a mix of untagged, priority-tagged, 802.1Q (VLAN 1 to 20 by
    /// default), QinQ and 0x9100-tagged frames carrying TCP, UDP, ICMP, IPv6 and ARP.
    Gen {
        /// Output file (.pcapng for pcapng).
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        out: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Seed of the deterministic generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Highest VLAN id used for tagged frames.
        #[arg(long, default_value_t = 20)]
        max_vlan: u16,
    },
    /// Send a capture's frames out of an interface at high rate (a traffic generator): the
    /// kernel injects them (BPF_PROG_TEST_RUN, live frames) in runs of 64 copies of each frame.
    /// On a veth, the peer must run XDP (native) or have GRO on to take them.
    Blast {
        /// Interface the frames leave through.
        interface: String,
        /// Frames to send, cycled through (pcap or pcapng).
        pcap: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// At most this many frames per second [default: as fast as the kernel goes].
        #[arg(long)]
        rate: Option<u64>,
        /// Run on this CPU (frames are sent from the CPU the generator runs on).
        #[arg(long)]
        cpu: Option<usize>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    vxspan::panics::install();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Check { config, json } => check::run(&config, json),
        Cmd::Replay {
            config,
            inputs,
            outputs,
            out_dir,
            json,
            hash_key,
        } => replay::run(
            &config,
            &inputs,
            &outputs,
            out_dir.as_deref(),
            json,
            hash_key.as_deref(),
        ),
        Cmd::Demo { count } => replay::demo(count),
        Cmd::Lab { count } => lab::lab(count),
        Cmd::Run {
            config,
            datapath,
            workers,
            xdp_mode,
            transmit,
            control,
            user,
            log_level,
            log_format,
        } => daemon::run(
            &config,
            daemon::RunOptions {
                datapath: &datapath,
                workers: &workers,
                xdp_mode: &xdp_mode,
                transmit: &transmit,
                control: control.as_deref(),
                user: user.as_deref(),
                log_level: &log_level,
                log_json: log_format == "json",
            },
        ),
        Cmd::Stats { json, control } => client::stats(&control, json),
        Cmd::Status { control } => client::status(&control),
        Cmd::Capture { control, rule, out } => client::capture(&control, rule.as_deref(), &out),
        Cmd::Manpage => {
            use clap::CommandFactory;
            let man = clap_mangen::Man::new(Cli::command()).section("8");
            man.render(&mut std::io::stdout())
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into)
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "vxspan", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Reload { control } => client::reload(&control),
        Cmd::Restart { control } => client::restart(&control),
        Cmd::Top {
            control,
            interval_ms,
        } => top::top(
            &control,
            std::time::Duration::from_millis(interval_ms.max(100)),
        ),
        Cmd::Gen {
            out,
            count,
            seed,
            max_vlan,
        } => gen::write(&out, count, seed, max_vlan).map(|n| {
            eprintln!("wrote {n} frames to {}", out.display());
            ExitCode::SUCCESS
        }),
        Cmd::Blast {
            interface,
            pcap,
            count,
            rate,
            cpu,
            json,
        } => blast::run(&interface, &pcap, count, rate, cpu, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vxspan: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
