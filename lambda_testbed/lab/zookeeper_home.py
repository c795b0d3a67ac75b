"""A ZooKeeper "home" with the Apache command contract, built on Debian's zookeeper package.

Why a wrapper: Debian's `/usr/share/zookeeper/bin/zkServer.sh` is upstream's script, but it
sources `zkEnv.sh` from its own directory, and Debian makes that a symlink to
`/etc/zookeeper/conf/environment`, which sets `ZOOCFGDIR`, `ZOOCFG`, `ZOO_LOG_DIR` and
`CLASSPATH` unconditionally. So the Apache contract breaks:

- `ZOOCFGDIR=/x zkServer.sh start` still reads `/etc/zookeeper/conf/zoo.cfg`;
- `zkServer.sh --config /x start` prints the usage (Apache parses `--config` in zkEnv.sh);
- `ZOO_LOG_DIR` is forced to `/var/log/zookeeper`;
- the class path lacks a logging binding (slf4j finds none, the server logs nothing).

(`ZOOPIDFILE` is honoured, and `zkServer.sh start /abs/zoo.cfg` works, but roles written for
an Apache tarball use `ZOOCFGDIR`/`--config`.)

The home built here keeps Debian's real scripts (symlinked, so `zkServer.sh` finds its
`zkEnv.sh` next to the symlink) and supplies an Apache-style `bin/zkEnv.sh`:

    <home>/bin/zkServer.sh  -> /usr/share/zookeeper/bin/zkServer.sh
    <home>/bin/zkCli.sh     -> /usr/share/zookeeper/bin/zkCli.sh
    <home>/bin/zkCleanup.sh -> /usr/share/zookeeper/bin/zkCleanup.sh
    <home>/bin/zkEnv.sh        honours --config, ZOOCFGDIR, ZOOCFG, ZOO_LOG_DIR, JAVA_HOME,
                               zookeeper-env.sh and java.env like Apache's
    <home>/conf/log4j.properties, <home>/conf/zoo_sample.cfg

So `ZOOCFGDIR=<conf> ZOO_LOG_DIR=<logs> ZOOPIDFILE=<pid> <home>/bin/zkServer.sh start|stop|status`
runs org.apache.zookeeper.server.quorum.QuorumPeerMain from Debian's jars, exactly as an
Apache tarball's home would.
"""

from __future__ import annotations

import os
from pathlib import Path

DEBIAN_BIN = Path("/usr/share/zookeeper/bin")
DEBIAN_JARS = Path("/usr/share/java")
# zookeeper.jar's manifest Class-Path brings the rest (jute, netty, slf4j-api, jetty...);
# the log4j binding is what Debian's service unit adds and the manifest lacks.
JARS = ("zookeeper.jar", "log4j-1.2.jar", "slf4j-log4j12.jar")
SCRIPTS = ("zkServer.sh", "zkCli.sh", "zkCleanup.sh")

ZKENV = """\
#!/usr/bin/env bash
# Apache ZooKeeper's zkEnv.sh contract over Debian's jars (lambda_testbed.lab.zookeeper_home).
# Sourced by zkServer.sh/zkCli.sh: a `shift` here shifts the caller's arguments, which is
# how Apache's scripts accept `--config <dir>` before the command.

# Location-independent, like Apache's: the home is wherever this bin/ directory is.
ZOOBINDIR="${{ZOOBINDIR:-$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)}}"
ZOOKEEPER_PREFIX="$(cd "$ZOOBINDIR/.." && pwd)"

if [ $# -gt 1 ] && [ "--config" = "$1" ]; then
    shift
    ZOOCFGDIR="$1"
    shift
fi
ZOOCFGDIR="${{ZOOCFGDIR:-$ZOOKEEPER_PREFIX/conf}}"
ZOOCFGDIR="${{ZOOCFGDIR%/}}"  # zkServer.sh compares dirname "$ZOOCFG" with it

if [ -f "$ZOOCFGDIR/zookeeper-env.sh" ]; then
    . "$ZOOCFGDIR/zookeeper-env.sh"
fi
ZOOCFG="$ZOOCFGDIR/${{ZOOCFG:-zoo.cfg}}"
if [ -f "$ZOOCFGDIR/java.env" ]; then
    . "$ZOOCFGDIR/java.env"
fi
ZOO_LOG_DIR="${{ZOO_LOG_DIR:-$ZOOKEEPER_PREFIX/logs}}"

if [ -n "$JAVA_HOME" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    JAVA="$JAVA_HOME/bin/java"
elif type -p java >/dev/null; then
    JAVA=java
else
    echo "Error: JAVA_HOME is not set and java could not be found in PATH." 1>&2
    exit 1
fi

# The user's conf dir first (its log4j.properties wins), then this home's defaults.
CLASSPATH="$ZOOCFGDIR:$ZOOKEEPER_PREFIX/conf:{classpath}${{CLASSPATH:+:$CLASSPATH}}"
export CLASSPATH

export SERVER_JVMFLAGS="-Xmx${{ZK_SERVER_HEAP:-1000}}m $SERVER_JVMFLAGS"
export CLIENT_JVMFLAGS="-Xmx${{ZK_CLIENT_HEAP:-256}}m $CLIENT_JVMFLAGS"
"""

LOG4J = """\
# Written by lambda_testbed.lab.zookeeper_home: zkServer.sh passes zookeeper.log.dir/.file.
zookeeper.log.dir=.
zookeeper.log.file=zookeeper.log
log4j.rootLogger=INFO, ROLLINGFILE
log4j.appender.ROLLINGFILE=org.apache.log4j.RollingFileAppender
log4j.appender.ROLLINGFILE.File=${zookeeper.log.dir}/${zookeeper.log.file}
log4j.appender.ROLLINGFILE.MaxFileSize=10MB
log4j.appender.ROLLINGFILE.MaxBackupIndex=3
log4j.appender.ROLLINGFILE.layout=org.apache.log4j.PatternLayout
log4j.appender.ROLLINGFILE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
"""

ZOO_SAMPLE = """\
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf
"""


def debian_zookeeper_available() -> bool:
    return (DEBIAN_BIN / "zkServer.sh").exists() and (DEBIAN_JARS / "zookeeper.jar").exists()


def install_zookeeper_home(dest: Path | str) -> Path:
    """Build (or refresh) a ZooKeeper home at `dest` and return it. Idempotent."""
    if not debian_zookeeper_available():
        raise FileNotFoundError(
            "Debian's zookeeper package is not installed (scripts/install-lab-deps.sh)"
        )
    home = Path(dest)
    (home / "bin").mkdir(parents=True, exist_ok=True)
    (home / "conf").mkdir(parents=True, exist_ok=True)
    for script in SCRIPTS:
        link = home / "bin" / script
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(DEBIAN_BIN / script)
    classpath = ":".join(str(DEBIAN_JARS / jar) for jar in JARS)
    env = home / "bin" / "zkEnv.sh"
    env.write_text(ZKENV.format(classpath=classpath))
    os.chmod(env, 0o755)
    (home / "conf" / "log4j.properties").write_text(LOG4J)
    (home / "conf" / "zoo_sample.cfg").write_text(ZOO_SAMPLE)
    return home
