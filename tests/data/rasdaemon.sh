#!/bin/sh
# Run by the project's /init (armras_sh=/rasdaemon.sh) in an initramfs built with
# `armras initramfs --debian busybox-static,rasdaemon` (tests/test_linux_rasdaemon.py).
# Each "RASTEST <step>" line is a host trigger: the host injects the error named.
/usr/bin/busybox --install -s
mount -t debugfs debugfs /sys/kernel/debug || echo "RASTEST ERROR no debugfs"
mkdir -p /var/lib/rasdaemon
rasdaemon --foreground --record >/tmp/rasdaemon.log 2>&1 &
# rasdaemon is ready once a thread has opened its database ("Recording ... events");
# before that it waits 30 s of guest time for each tracepoint the kernel lacks.
i=0
until grep -q "Recording memory_failure_event events" /tmp/rasdaemon.log; do
    i=$((i + 1))
    if [ $i -gt 1500 ]; then echo "RASTEST ERROR rasdaemon not ready"; break; fi
    sleep 1
done
sleep 1
echo "RASTEST ready uptime=$(cut -d' ' -f1 /proc/uptime)"
/init --seatest
echo "RASTEST gpio"
sleep 2
echo "RASTEST arm"
sleep 2
echo "RASTEST rasdaemon log:"
cat /tmp/rasdaemon.log
echo "RASTEST ras-mc-ctl --summary:"
ras-mc-ctl --summary
echo "RASTEST ras-mc-ctl --errors:"
ras-mc-ctl --errors
echo "RASTEST done"
