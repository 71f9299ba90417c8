#!/bin/sh
# /test.sh: the slow path of gvmm's test initramfs.
#
# /init (guest/init/init.c) runs "/bin/busybox sh /test.sh" when the kernel
# command line has test=LIST (comma separated), passing LIST in GUEST_TEST
# and its own verdict so far in GUEST_VERDICT. The script prints its results
# and hands back to /init for the exit step with "exec /init --exit VERDICT".
#
# Every external command is a fork and an exec, which costs seconds on the
# nested KVM backend of the development machines: use shell builtins (echo,
# read, [, $(( ))) wherever they do the job.
#
# Tests:
#   blk     GUEST-BLK vda sectors=N, GUEST-BLK-MD5 <md5 of sector 0 of /dev/vda>
#   net     GUEST-NET-LINK: followed by the output of "ip link"
#   virtio  GUEST-VIRTIO <dev> device=0x.... vendor=0x.... driver=<name>, one per device
#   shell   an interactive busybox shell on the console; the exit step follows
#           when it exits
#   blkcopy copy /dev/vda onto /dev/vdb (dd, 64 KiB blocks), sync, then
#           GUEST-BLK-SYNCED <md5 of what vdb now holds>
#   blkhold blkcopy, then wait (the host kills the VMM after GUEST-BLK-SYNCED)
#   blkro   /dev/vda must be read-only: GUEST-BLK-RO ro=1 and a write that fails
#   blkid   GUEST-BLK-SERIAL <serial of vda>
#   blkdiscard discard all of /dev/vdb (blkdiscard), GUEST-BLK-DISCARD <md5 of vdb>
#   root    mount /dev/vda (ext4) and switch_root to its /init (for kernels
#           whose virtio_blk is a module loaded from the initramfs)
#   blkbench /bin/blkbench's measurements of /dev/vdb (GUEST-BENCH lines)
#   netup   bring eth0 up with address NETIP (default 10.0.2.15/24):
#           GUEST-NET-UP <mac> <address>
#   ping    ping NETPEER (default 10.0.2.1) until it answers (30 tries):
#           GUEST-NET-PING <peer> ok
#   pinged  wait (up to 60 s) until someone has pinged this guest, then 1 s
#           more for the echo reply to leave: GUEST-NET-PINGED ok. Two guests
#           that ping each other run ping,pinged, so that the first to reach
#           the other does not power off before the other has reached it
#   netsend NETSIZE MiB (default 8) of random bytes to NETPEER:NETPORT (default
#           5000) with nc: GUEST-NET-SEND-SUM <md5>, then GUEST-NET-SENT
#   netrecv listen on NETPORT+1 with nc (GUEST-NET-LISTEN <port> first), then
#           GUEST-NET-RECV-SUM <md5> <bytes> of what arrived
#   netbench NETSIZE MiB of zeros to NETPEER:NETPORT with nc: GUEST-NET-BENCH-DONE
#   netbenchrecv listen on NETPORT+1 with nc (GUEST-NET-LISTEN <port> first) and
#           throw away what arrives: GUEST-NET-BENCH-RECV-DONE
#   netbench and netbenchrecv also print eth0's counters, the negotiated
#   virtio features and the virtio interrupts (GUEST-NET-COUNTERS,
#   GUEST-NET-FEATURES, GUEST-NET-IRQ lines)
# netup, ping, pinged, netsend, netrecv, netbench and netbenchrecv take NETIP,
# NETPEER, NETPORT and NETSIZE from netip=, netpeer=, netport= and netsize= on
# the command line.
# Verdict bits added here: 8 a test failed, 16 an unknown test.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
verdict=${GUEST_VERDICT:-0}
tests=${GUEST_TEST:-}
if [ -z "$tests" ]; then
    # Started by hand: read test= from the command line.
    read -r cmdline < /proc/cmdline
    for arg in $cmdline; do
        case $arg in test=*) tests=${arg#test=} ;; esac
    done
fi
# blkbench=NAME:ARG,... on the command line: the measurements to make.
BLKBENCH=
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
    case $arg in
        blkbench=*) BLKBENCH=${arg#blkbench=} ;;
        netip=*) NETIP=${arg#netip=} ;;
        netpeer=*) NETPEER=${arg#netpeer=} ;;
        netport=*) NETPORT=${arg#netport=} ;;
        netsize=*) NETSIZE=${arg#netsize=} ;;
    esac
done
NETIP=${NETIP:-10.0.2.15/24}
NETPEER=${NETPEER:-10.0.2.1}
NETPORT=${NETPORT:-5000}
NETSIZE=${NETSIZE:-8}

test_blk() {
    # virtio_blk probes synchronously when its module loads, but allow a
    # late device up to ~5 s.
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ ! -b /dev/vda ]; then
        echo "GUEST-BLK-FAIL no /dev/vda"
        return 1
    fi
    read -r sectors < /sys/block/vda/size
    echo "GUEST-BLK vda sectors=$sectors"
    md5=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | md5sum)
    md5=${md5%% *}
    if [ ${#md5} -ne 32 ]; then
        echo "GUEST-BLK-FAIL cannot read sector 0"
        return 1
    fi
    echo "GUEST-BLK-MD5 $md5"
}

wait_disk() {
    i=0
    while [ ! -b "$1" ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -b "$1" ] || { echo "GUEST-BLK-FAIL no $1"; return 1; }
}

test_blkcopy() {
    wait_disk /dev/vda && wait_disk /dev/vdb || return 1
    dd if=/dev/vda of=/dev/vdb bs=64k 2>/dev/null || { echo "GUEST-BLK-FAIL dd"; return 1; }
    sync
    md5=$(md5sum /dev/vdb)
    echo "GUEST-BLK-SYNCED ${md5%% *}"
}

test_blkro() {
    wait_disk /dev/vda || return 1
    read -r ro < /sys/block/vda/ro
    echo "GUEST-BLK-RO ro=$ro"
    [ "$ro" = 1 ] || return 1
    if dd if=/dev/zero of=/dev/vda bs=4k count=1 oflag=direct 2>/dev/null; then
        echo "GUEST-BLK-FAIL a write to the read-only disk succeeded"
        return 1
    fi
    echo "GUEST-BLK-RO-WRITE failed as it should"
}

test_blkid() {
    wait_disk /dev/vda || return 1
    read -r serial < /sys/block/vda/serial
    echo "GUEST-BLK-SERIAL $serial"
}

test_blkdiscard() {
    wait_disk /dev/vdb || return 1
    blkdiscard /dev/vdb || { echo "GUEST-BLK-FAIL blkdiscard"; return 1; }
    sync
    md5=$(md5sum /dev/vdb)
    echo "GUEST-BLK-DISCARD ${md5%% *}"
}

test_root() {
    wait_disk /dev/vda || return 1
    mkdir -p /newroot
    mount -t ext4 /dev/vda /newroot || { echo "GUEST-BLK-FAIL mount /dev/vda"; return 1; }
    umount /proc /sys 2>/dev/null
    exec switch_root /newroot /init
}

test_blkbench() {
    wait_disk /dev/vdb || return 1
    oldifs=$IFS
    IFS=,
    # shellcheck disable=SC2086 # split at the commas
    set -- $BLKBENCH
    IFS=$oldifs
    for b in "$@"; do
        /bin/blkbench "${b%%:*}" /dev/vdb "${b#*:}" || return 1
    done
}

test_net() {
    echo "GUEST-NET-LINK:"
    ip link
}

test_netup() {
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -e /sys/class/net/eth0 ] || { echo "GUEST-NET-FAIL no eth0"; return 1; }
    ip link set lo up
    ip addr add "$NETIP" dev eth0 || { echo "GUEST-NET-FAIL ip addr add $NETIP"; return 1; }
    ip link set eth0 up || { echo "GUEST-NET-FAIL ip link set eth0 up"; return 1; }
    read -r mac < /sys/class/net/eth0/address
    echo "GUEST-NET-UP $mac $NETIP"
}

test_ping() {
    i=0
    while [ $i -lt 30 ]; do
        if ping -c 1 -W 2 "$NETPEER" > /dev/null 2>&1; then
            echo "GUEST-NET-PING $NETPEER ok"
            return 0
        fi
        i=$((i + 1))
    done
    echo "GUEST-NET-FAIL ping $NETPEER"
    return 1
}

# icmp_in_echos sets echos to the echo requests the kernel has received
# (Icmp InEchos in /proc/net/snmp: a line of field names, then a line of
# values), with builtins only.
icmp_in_echos() {
    echos=0
    names=
    while read -r proto rest; do
        [ "$proto" = Icmp: ] || continue
        if [ -z "$names" ]; then
            names=$rest
            continue
        fi
        # shellcheck disable=SC2086 # split the values
        set -- $rest
        for f in $names; do
            if [ "$f" = InEchos ]; then
                echos=$1
                return
            fi
            shift
        done
        return
    done < /proc/net/snmp
}

test_pinged() {
    i=0
    while [ $i -lt 600 ]; do
        icmp_in_echos
        if [ "$echos" -gt 0 ]; then
            # The kernel answered at once; the reply still has to cross
            # the VMM's transmit queue before the guest powers off.
            sleep 1
            echo "GUEST-NET-PINGED ok"
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "GUEST-NET-FAIL nobody pinged $NETIP"
    return 1
}

test_netsend() {
    dd if=/dev/urandom of=/tmp/netsend bs=1M count="$NETSIZE" 2>/dev/null || { echo "GUEST-NET-FAIL dd"; return 1; }
    md5=$(md5sum /tmp/netsend)
    echo "GUEST-NET-SEND-SUM ${md5%% *}"
    nc "$NETPEER" "$NETPORT" < /tmp/netsend > /dev/null || { echo "GUEST-NET-FAIL nc $NETPEER $NETPORT"; return 1; }
    rm -f /tmp/netsend
    echo "GUEST-NET-SENT"
}

test_netrecv() {
    port=$((NETPORT + 1))
    echo "GUEST-NET-LISTEN $port"
    nc -l -p "$port" < /dev/null > /tmp/netrecv || { echo "GUEST-NET-FAIL nc -l $port"; return 1; }
    md5=$(md5sum /tmp/netrecv)
    size=$(wc -c < /tmp/netrecv)
    rm -f /tmp/netrecv
    echo "GUEST-NET-RECV-SUM ${md5%% *} $size"
}

# net_counters prints eth0's frame counters, the virtio feature bits its
# driver negotiated, and its interrupts: what a benchmark compares between
# VMMs.
net_counters() {
    line="GUEST-NET-COUNTERS $1"
    for c in tx_packets tx_bytes rx_packets rx_bytes; do
        read -r v < "/sys/class/net/eth0/statistics/$c"
        line="$line $c=$v"
    done
    echo "$line"
    for d in /sys/bus/virtio/devices/*; do
        [ -e "$d/net/eth0" ] || continue
        read -r f < "$d/features"
        echo "GUEST-NET-FEATURES $f"
    done
    while read -r irq count rest; do
        case $rest in *virtio*) echo "GUEST-NET-IRQ $irq $count ${rest##* }" ;; esac
    done < /proc/interrupts
}

test_netbench() {
    net_counters before-send
    dd if=/dev/zero bs=64k count=$((NETSIZE * 16)) 2>/dev/null | nc "$NETPEER" "$NETPORT" > /dev/null ||
        { echo "GUEST-NET-FAIL nc $NETPEER $NETPORT"; return 1; }
    net_counters after-send
    echo "GUEST-NET-BENCH-DONE"
}

test_netbenchrecv() {
    port=$((NETPORT + 1))
    echo "GUEST-NET-LISTEN $port"
    nc -l -p "$port" < /dev/null > /dev/null || { echo "GUEST-NET-FAIL nc -l $port"; return 1; }
    net_counters after-recv
    echo "GUEST-NET-BENCH-RECV-DONE"
}

test_virtio() {
    for d in /sys/bus/virtio/devices/*; do
        [ -e "$d" ] || continue
        read -r dev < "$d/device"
        read -r vendor < "$d/vendor"
        drv=none
        if [ -e "$d/driver" ]; then
            drv=$(readlink "$d/driver")
            drv=${drv##*/}
        fi
        echo "GUEST-VIRTIO ${d##*/} device=$dev vendor=$vendor driver=$drv"
    done
}

oldifs=$IFS
IFS=,
# shellcheck disable=SC2086 # split at the commas
set -- $tests
IFS=$oldifs
for t in "$@"; do
    case $t in
        blk)    test_blk || verdict=$((verdict | 8)) ;;
        net)    test_net || verdict=$((verdict | 8)) ;;
        virtio) test_virtio || verdict=$((verdict | 8)) ;;
        shell)  setsid cttyhack sh ;;
        blkcopy) test_blkcopy || verdict=$((verdict | 8)) ;;
        blkhold) test_blkcopy || verdict=$((verdict | 8)); while :; do sleep 1000; done ;;
        blkro)  test_blkro || verdict=$((verdict | 8)) ;;
        blkid)  test_blkid || verdict=$((verdict | 8)) ;;
        blkdiscard) test_blkdiscard || verdict=$((verdict | 8)) ;;
        root)   test_root || verdict=$((verdict | 8)) ;;
        blkbench) test_blkbench || verdict=$((verdict | 8)) ;;
        netup)  test_netup || verdict=$((verdict | 8)) ;;
        ping)   test_ping || verdict=$((verdict | 8)) ;;
        pinged) test_pinged || verdict=$((verdict | 8)) ;;
        netsend) test_netsend || verdict=$((verdict | 8)) ;;
        netrecv) test_netrecv || verdict=$((verdict | 8)) ;;
        netbench) test_netbench || verdict=$((verdict | 8)) ;;
        netbenchrecv) test_netbenchrecv || verdict=$((verdict | 8)) ;;
        *)      echo "GUEST-TEST-UNKNOWN $t"; verdict=$((verdict | 16)) ;;
    esac
done

# shellcheck disable=SC2093 # the lines after it are the fallback
exec /init --exit "$verdict"
# Only reached if /init could not be executed.
echo "GUEST-PANIC exec /init --exit failed"
poweroff -f
