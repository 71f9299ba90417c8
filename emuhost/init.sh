#!/bin/sh
# /init of the emulated KVM host (package emuhost). It runs under QEMU's
# software CPU, loads kvm-amd and the 9p modules, mounts the machine's whole
# file system from the 9p export "host" on /host, and runs the command the
# runner wrote into its run folder (emuhost.dir= on the kernel command line)
# in a chroot there: same paths, now with /dev/kvm. The command's exit status
# goes into DIR/status, then the host powers off. Any failure before the
# command runs is one line starting "emuhost:" and a status of 125.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

dir=
for arg in $(cat /proc/cmdline); do
    case $arg in emuhost.dir=*) dir=${arg#emuhost.dir=} ;; esac
done

# The heartbeat: a line on the second serial port (ttyS1) every 10 s,
# which QEMU writes into a file that the runner watches. When it stops, no
# CPU of the host runs anything any more (QEMU's software CPU is stuck),
# and the runner stops QEMU instead of waiting for its timeout.
beat() {
    while :; do
        cut -d' ' -f1 /proc/uptime
        sleep 10
    done > /dev/ttyS1
}
beat &

# off: power off without the kernel's "reboot: Power down" on the console,
# which would end the command's output.
off() {
    sync
    echo 0 > /proc/sys/kernel/printk
    poweroff -f
}

fail() {
    echo "emuhost: $*" >&2
    [ -n "$dir" ] && [ -d "/host$dir" ] && echo 125 > "/host$dir/status"
    off
}

# Module options come from the kernel command line as MODULE.OPTION=VALUE
# (kvm_amd.nested=0), as modprobe would take them: busybox's insmod does
# not look there itself.
cmdline=$(cat /proc/cmdline)
while read -r m; do
    name=$(basename "$m" .ko | tr - _)
    opts=
    for arg in $cmdline; do
        case $arg in "$name".?*=*) opts="$opts ${arg#"$name".}" ;; esac
    done
    # shellcheck disable=SC2086 # one word per option
    insmod "/lib/modules/$m" $opts || fail "insmod $m$opts failed"
done < /lib/modules/load-order

mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none host /host ||
    fail "cannot mount this machine's files over 9p"
[ -n "$dir" ] && [ -f "/host$dir/run.sh" ] || fail "no run folder on the kernel command line (emuhost.dir=)"
# kvm-amd loads on any CPU and only then finds SVM missing.
[ -c /dev/kvm ] || fail "no /dev/kvm: kvm-amd did not bind (the CPU model needs +svm and +npt): $(dmesg | grep -i -m1 -e svm -e kvm)"

# The command sees this machine's own file system, with fresh kernel
# file systems: a tmpfs on /run so that state such as ip netns files from
# an earlier run is not seen, and a tmpfs for temporary files (the 9p
# export cannot mmap files, and is slow).
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
mount -t tmpfs -o mode=0755 tmpfs /host/run
mkdir -p /host/run/emuhost-tmp
chmod 1777 /host/run/emuhost-tmp
[ -d /host/sys/fs/cgroup ] && mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null
ip link set lo up 2>/dev/null

# QEMU 7.2's software CPU can lock up one host CPU for good while kvm-amd
# runs a nested guest on it (with nested paging, in about one in three runs
# of the vmtest tests, which start many short VMs; emuhost now turns nested
# paging off, and this stays as a guard): that CPU stops taking interrupts, so
# the command never ends and the kernel's own watchdogs, which need the
# CPU's timer, say nothing. Its counters in /proc/stat stop with it, which
# those of a busy or an idle CPU never do. After a minute of that, say so on
# the console, leave the message in DIR/lockup for the runner, and power off.
watchdog() {
    prev= rounds=0
    while sleep 10; do
        now=$(grep '^cpu[0-9]' /proc/stat)
        stopped=$(printf '%s\n%s\n' "$prev" "$now" | awk '
            NF { t = 0; for (i = 2; i <= NF; i++) t += $i
                 if ($1 in s) { if (s[$1] == t) printf "%s ", $1 } else s[$1] = t }')
        prev=$now
        if [ -z "$stopped" ]; then rounds=0; continue; fi
        rounds=$((rounds + 1))
        [ "$rounds" -ge 6 ] || continue
        msg="host ${stopped% } made no progress for a minute: QEMU's software CPU locked up running a nested guest"
        echo "emuhost: $msg" > /dev/console
        echo "$msg" > "/host$dir/lockup"
        off
    done
}
watchdog &

# The holder (emuhost --hold-vm, see emuhost.HoldVM) keeps a KVM VM open
# for the host's whole life, so that starting and stopping the command's
# VMs never makes the kernel patch its own code, which QEMU 7.2's software
# CPU can get wrong for good. Wait until it holds its VM.
if [ -f "/host$dir/hold.sh" ]; then
    chroot /host /bin/sh "$dir/hold.sh" &
    i=0
    while [ ! -e "/host$dir/held" ] && [ "$i" -lt 60 ] && kill -0 $! 2>/dev/null; do
        sleep 1
        i=$((i + 1))
    done
fi

chroot /host /bin/sh "$dir/run.sh"
echo $? > "/host$dir/status"
off
