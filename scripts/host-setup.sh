#!/usr/bin/env bash
# Prepare a Debian (bookworm) host for autobuilder: packages, a running dockerd,
# a Btrfs data directory and the locally made base images. Run as root.
#
# redis-server is installed for distributed builds (BullMQ) and their tests. No system redis
# is required: Debian's package starts one on 6379 where an init system runs, but the tests
# and the demo start their own redis-server processes on free ports. openssl makes the
# throwaway certificates of the TLS tests.
#
# Idempotent: a second run finds everything in place, changes nothing and takes a
# few seconds (most of it spent on the verification containers).
#
# Environment:
#   AUTOBUILDER_DATA_DIR      data directory (default: <repo root>/data)
#   AUTOBUILDER_BTRFS_IMAGE   loop image backing the data dir when it is not on Btrfs yet
#                             (default: /var/lib/autobuilder/btrfs-<sha256(data dir)[:12]>.img,
#                             one image per data directory, so a second clone of the repo
#                             at another path never mounts the same image twice)
#   AUTOBUILDER_BTRFS_SIZE    size of a new image (default: 8G, sparse)
#   AUTOBUILDER_DEBIAN_MIRROR mirror for debootstrap (default: from the apt sources)
#   AUTOBUILDER_DOCKERD_TIMEOUT seconds to wait for a new dockerd (default: 60)
#   AUTOBUILDER_SKIP_VERIFY=1 skip the verification containers
#   AUTOBUILDER_BUILDS_ALLOW  comma-separated IPv4 CIDRs builds may still reach although they are
#                             private or the host's (e.g. an internal package mirror); default none
set -Eeuo pipefail
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(dirname "$SCRIPT_DIR")

BUSYBOX_IMAGE=autobuilder/busybox:latest
DEBIAN_IMAGE=autobuilder/debian-build:bookworm
# Bump when the way an image is made changes: an image with another recipe label is remade.
BUSYBOX_RECIPE=1
DEBIAN_RECIPE=2 # 2: ccache added
PACKAGES=(docker.io btrfs-progs busybox-static debootstrap git iptables chromium redis-server openssl)
STATE_DIR=/var/lib/autobuilder
DOCKERD_LOG=/var/log/dockerd.log
DOCKERD_TIMEOUT=${AUTOBUILDER_DOCKERD_TIMEOUT:-60}

# ---------------------------------------------------------------- helpers
now_us() { local t=${EPOCHREALTIME}; echo "${t//[.,]/}"; }
fmt_s() { # microseconds -> "1.2"
  local us=$1
  printf '%d.%d' $((us / 1000000)) $(((us % 1000000) / 100000))
}
log() { printf '[host-setup] %s\n' "$*"; }
detail() { printf '[host-setup]   %s\n' "$*"; }
die() { printf '[host-setup] ERROR: %s\n' "$*" >&2; exit 1; }

T_START=$(now_us)
CURRENT_STEP=""
STEP_RESULT=""
SUMMARY=()
STAGING_DIRS=()

cleanup() {
  local d
  for d in "${STAGING_DIRS[@]}"; do [[ -n $d && -d $d ]] && rm -rf --one-file-system "$d"; done
  return 0
}
on_err() {
  local rc=$? line=$1 cmd=$BASH_COMMAND
  printf '[host-setup] FAILED in step "%s" (line %s, exit %s, command: %s) after %s s\n' \
    "${CURRENT_STEP:-?}" "$line" "$rc" "$cmd" "$(fmt_s $(($(now_us) - T_START)))" >&2
}
trap 'on_err $LINENO' ERR
trap cleanup EXIT

# run_step NAME FUNCTION: the function sets STEP_RESULT to a one-line outcome.
run_step() {
  local name=$1 fn=$2 t0 dt
  CURRENT_STEP=$name
  STEP_RESULT=""
  t0=$(now_us)
  "$fn"
  dt=$(($(now_us) - t0))
  log "$name: ${STEP_RESULT:-done} ($(fmt_s "$dt") s)"
  SUMMARY+=("$(printf '%-9s %6s s  %s' "$name" "$(fmt_s "$dt")" "$STEP_RESULT")")
  CURRENT_STEP=""
}

# PIDs whose command name (/proc/PID/comm) is exactly $1.
pids_of() {
  local d c
  for d in /proc/[0-9]*; do
    c=$(cat "$d/comm" 2>/dev/null) || continue
    [[ $c == "$1" ]] && echo "${d#/proc/}"
  done
  return 0
}
pid_is() { # pid_is PID NAME: PID is alive and is NAME
  [[ -n ${1:-} && -r /proc/$1/comm ]] && [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]
}
docker_answers() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }
image_recipe() { # prints the recipe label of an image, fails when the image is absent
  docker image inspect --format '{{index .Config.Labels "org.autobuilder.recipe"}}' "$1" 2>/dev/null
}

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ -r /etc/debian_version ]] || die "this script is for Debian hosts"

# ---------------------------------------------------------------- 1. apt packages
step_apt() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    STEP_RESULT="all ${#PACKAGES[@]} packages already installed"
    return
  fi
  detail "installing: ${missing[*]}"
  local aptlog=/var/log/autobuilder-apt.log
  if ! { apt-get -q -o DPkg::Lock::Timeout=120 update &&
    apt-get -q -y -o DPkg::Lock::Timeout=120 install --no-install-recommends "${missing[@]}"; } \
    >"$aptlog" 2>&1; then
    tail -n 30 "$aptlog" >&2
    die "apt-get failed (full log: $aptlog)"
  fi
  STEP_RESULT="installed ${missing[*]}"
}

# ---------------------------------------------------------------- 2. dockerd
# Make the kernel prerequisites of dockerd present (only called when starting one).
docker_prereqs() {
  # cgroups: this VM has a hybrid v1 layout (tmpfs + v1 controllers + cgroup2 at unified).
  # A host with nothing mounted on /sys/fs/cgroup gets the unified hierarchy mounted.
  local cgfs
  cgfs=$(stat -f -c %T /sys/fs/cgroup 2>/dev/null || echo none)
  if [[ $cgfs != cgroup2fs ]] && ! ls /sys/fs/cgroup/*/cgroup.procs >/dev/null 2>&1 &&
    [[ ! -e /sys/fs/cgroup/cgroup.procs ]]; then
    detail "no cgroup hierarchy mounted: mounting cgroup2 on /sys/fs/cgroup"
    mkdir -p /sys/fs/cgroup
    mount -t cgroup2 none /sys/fs/cgroup
  fi
  # iptables: dockerd 20.10 calls the `iptables` alternative. Debian's default is
  # iptables-nft; fall back to iptables-legacy on kernels without nf_tables.
  if ! iptables -t nat -S >/dev/null 2>&1; then
    if iptables-legacy -t nat -S >/dev/null 2>&1; then
      detail "iptables-nft does not work here: switching the alternatives to iptables-legacy"
      update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
      update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null || true
    else
      detail "WARNING: neither iptables-nft nor iptables-legacy works; bridge networking will fail"
    fi
  fi
}

# Remove what a killed dockerd/containerd left behind (pid files, sockets, mounts).
docker_clean_stale() {
  local removed=() f
  if [[ -z $(pids_of dockerd) ]]; then
    for f in /var/run/docker.pid /var/run/docker.sock; do
      [[ -e $f || -L $f ]] && { rm -f "$f"; removed+=("$f"); }
    done
  fi
  if [[ -z $(pids_of containerd) ]]; then
    # dockerd's own (supervised) containerd, and a system containerd: dockerd 20.10 uses
    # /run/containerd/containerd.sock whenever that path exists, even when it is dead.
    for f in /var/run/docker/containerd/containerd.pid \
      /var/run/docker/containerd/containerd.sock \
      /var/run/docker/containerd/containerd.sock.ttrpc \
      /var/run/docker/containerd/containerd-debug.sock \
      /run/containerd/containerd.pid \
      /run/containerd/containerd.sock \
      /run/containerd/containerd.sock.ttrpc \
      /run/containerd/debug.sock; do
      [[ -e $f || -L $f ]] && { rm -f "$f"; removed+=("$f"); }
    done
  fi
  # Mounts of containers that were running when everything was killed (overlay rootfs,
  # shm, network namespaces). /run is on the root disk here, so they outlive a session.
  if [[ -z $(pids_of dockerd) && -z $(pids_of containerd) && -z $(pids_of containerd-shim-runc-v2) ]]; then
    local mp n=0
    while read -r mp; do
      [[ -n $mp ]] || continue
      umount -l "$mp" 2>/dev/null && n=$((n + 1))
    done < <(awk '{ print $5 }' /proc/self/mountinfo |
      { grep -E '^(/var/lib/docker|/run/docker|/var/run/docker|/run/containerd)/' || true; } |
      awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-)
    ((n > 0)) && removed+=("$n stale mounts")
  fi
  if ((${#removed[@]} > 0)); then
    detail "cleaned stale state: ${removed[*]}"
  fi
  return 0
}

step_docker() {
  if docker_answers; then
    STEP_RESULT="already answering"
    return
  fi
  local waited_for_existing=0 pid
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  if pid_is "$pid" dockerd || [[ -n $(pids_of dockerd) ]]; then
    # A dockerd is alive but not answering yet (still starting?): give it the same time.
    detail "a dockerd is running ($(pids_of dockerd | tr '\n' ' ')) but not answering yet; waiting"
    waited_for_existing=1
  else
    docker_clean_stale
    docker_prereqs
    command -v dockerd >/dev/null || die "dockerd not found (is docker.io installed?)"
    [[ -f $DOCKERD_LOG ]] && mv -f "$DOCKERD_LOG" "$DOCKERD_LOG.1"
    detail "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup + no stdin: the daemon outlives this script and its session.
    # `setsid -f` forks at once, so no shell of ours stays around holding our stdout.
    setsid -f env -C / nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
  fi
  local deadline=$(($(now_us) + DOCKERD_TIMEOUT * 1000000))
  while ! docker_answers; do
    if [[ -z $(pids_of dockerd) ]]; then
      tail -n 40 "$DOCKERD_LOG" >&2 || true
      die "dockerd exited during start-up (see $DOCKERD_LOG)"
    fi
    if (($(now_us) > deadline)); then
      tail -n 40 "$DOCKERD_LOG" >&2 || true
      die "dockerd did not answer within ${DOCKERD_TIMEOUT} s (see $DOCKERD_LOG)"
    fi
    sleep 0.25
  done
  if ((waited_for_existing)); then
    STEP_RESULT="existing dockerd now answering (pid $(pids_of dockerd | head -n1))"
  else
    STEP_RESULT="started dockerd (pid $(pids_of dockerd | head -n1))"
  fi
}

# ---------------------------------------------------------------- 3. Btrfs data dir
DATA_DIR=$(realpath -m "${AUTOBUILDER_DATA_DIR:-$REPO_ROOT/data}")
if [[ -n ${AUTOBUILDER_BTRFS_IMAGE:-} ]]; then
  BTRFS_IMAGE=$(realpath -m "$AUTOBUILDER_BTRFS_IMAGE")
else
  BTRFS_IMAGE=$STATE_DIR/btrfs-$(printf '%s' "$DATA_DIR" | sha256sum | cut -c1-12).img
fi
BTRFS_SIZE=${AUTOBUILDER_BTRFS_SIZE:-8G}

ensure_root_owned() {
  if [[ $(stat -c %u:%g "$DATA_DIR") != 0:0 ]]; then
    chown root:root "$DATA_DIR"
    detail "chowned $DATA_DIR to root:root"
  fi
}

step_btrfs() {
  mkdir -p "$DATA_DIR"
  if [[ $(stat -f -c %T "$DATA_DIR") == btrfs ]]; then
    ensure_root_owned
    STEP_RESULT="$DATA_DIR already on btrfs ($(findmnt -n -o SOURCE --target "$DATA_DIR" | head -n1))"
    return
  fi
  local did=()
  mkdir -p "$(dirname "$BTRFS_IMAGE")"
  if [[ ! -e $BTRFS_IMAGE ]]; then
    truncate -s "$BTRFS_SIZE" "$BTRFS_IMAGE"
    chmod 600 "$BTRFS_IMAGE"
    printf '%s\n' "$DATA_DIR" >"$BTRFS_IMAGE.path" # which data dir this image belongs to
    did+=("created $BTRFS_SIZE sparse image")
  fi
  local fstype
  fstype=$(blkid -p -o value -s TYPE "$BTRFS_IMAGE" 2>/dev/null || true)
  if [[ -z $fstype ]]; then
    mkfs.btrfs -q -L autobuilder "$BTRFS_IMAGE" >/dev/null
    did+=("mkfs.btrfs")
  elif [[ $fstype != btrfs ]]; then
    die "$BTRFS_IMAGE holds a $fstype filesystem, not btrfs; remove it or set AUTOBUILDER_BTRFS_IMAGE"
  fi
  if [[ -n $(find "$DATA_DIR" -mindepth 1 -maxdepth 1 -print -quit) ]]; then
    detail "WARNING: $DATA_DIR is not empty; its current contents are hidden (not deleted) by the mount"
  fi
  # Never attach one image to two loop devices (two Btrfs instances over one file would
  # corrupt it): when the image is already attached (mounted elsewhere, e.g. at an older
  # clone's data dir), mount that loop device again, which shares the one filesystem.
  local loopdev
  loopdev=$(losetup -n -O NAME -j "$BTRFS_IMAGE" 2>/dev/null | head -n1 || true)
  if [[ -n $loopdev ]]; then
    mount -t btrfs "$loopdev" "$DATA_DIR"
    local elsewhere
    elsewhere=$(findmnt -n -o TARGET --source "$loopdev" | grep -vxF "$DATA_DIR" | paste -sd ' ' || true)
    detail "$BTRFS_IMAGE is already attached to $loopdev (mounted at: ${elsewhere:-nowhere}); sharing that filesystem"
    did+=("mounted existing $loopdev")
  else
    mount -t btrfs -o loop "$BTRFS_IMAGE" "$DATA_DIR"
    did+=("mounted $(findmnt -n -o SOURCE --target "$DATA_DIR" | head -n1)")
  fi
  [[ $(stat -f -c %T "$DATA_DIR") == btrfs ]] || die "$DATA_DIR is still not on btrfs after mounting"
  ensure_root_owned
  local IFS=,
  STEP_RESULT="$DATA_DIR on btrfs from $BTRFS_IMAGE: ${did[*]}"
}

# ---------------------------------------------------------------- 4. base images
# Mirror for debootstrap: the machine's own Debian mirror (deb822 .sources first).
debian_mirror() {
  if [[ -n ${AUTOBUILDER_DEBIAN_MIRROR:-} ]]; then
    echo "$AUTOBUILDER_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(awk '
    BEGIN { RS = ""; FS = "\n" }            # one paragraph per stanza
    {
      types = ""; uris = ""; suites = ""; enabled = "yes"
      for (i = 1; i <= NF; i++) {
        line = $i
        if (line ~ /^#/) continue
        split(line, kv, ":")
        key = tolower(kv[1]); val = substr(line, index(line, ":") + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = tolower(val)
      }
      if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ / bookworm /) {
        split(uris, u, /[ \t]+/); print u[1]; exit
      }
    }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [[ -z $uri ]]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -E 's/\[[^]]*\]//' |
      awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

make_busybox_image() {
  local dir p
  dir=$(mktemp -d /var/tmp/autobuilder-busybox.XXXXXX)
  STAGING_DIRS+=("$dir")
  mkdir -p "$dir/bin" "$dir/etc" "$dir/root" "$dir/tmp"
  chmod 1777 "$dir/tmp"
  chmod 700 "$dir/root"
  cp /bin/busybox "$dir/bin/busybox"
  # Every applet as a symlink at its canonical place (bin/ls, usr/bin/env, sbin/ip, ...).
  while read -r p; do
    [[ $p == */* && $p != bin/busybox ]] || continue
    mkdir -p "$dir/$(dirname "$p")"
    ln -sfn /bin/busybox "$dir/$p"
  done < <(/bin/busybox --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  tar --numeric-owner -C "$dir" -c . |
    docker import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'CMD ["/bin/sh"]' \
      -c "LABEL org.autobuilder.recipe=$BUSYBOX_RECIPE" \
      -c "LABEL org.autobuilder.source=busybox-static_$(dpkg-query -W -f='${Version}' busybox-static)" \
      -m "autobuilder host-setup: busybox-static rootfs" \
      - "$BUSYBOX_IMAGE" >/dev/null
  rm -rf --one-file-system "$dir"
}

# make_debian_image [keep-old]: with keep-old, a failed debootstrap (no mirror reachable) sets
# DEBIAN_KEPT=1 and returns, leaving the image of an older recipe in place, instead of dying.
make_debian_image() {
  local dir mirror
  mirror=$(debian_mirror)
  dir=$(mktemp -d /var/tmp/autobuilder-debootstrap.XXXXXX)
  STAGING_DIRS+=("$dir")
  detail "debootstrap --variant=minbase bookworm from $mirror (about 30 s)"
  if ! debootstrap --variant=minbase --include=gcc,make,libc6-dev,tar,gzip,ccache \
    bookworm "$dir" "$mirror" >"$dir.log" 2>&1; then
    tail -n 20 "$dir.log" >&2
    [[ -f $dir/debootstrap/debootstrap.log ]] && tail -n 20 "$dir/debootstrap/debootstrap.log" >&2
    rm -f "$dir.log"
    if [[ ${1:-} == keep-old ]]; then
      DEBIAN_KEPT=1
      return 0
    fi
    die "debootstrap failed"
  fi
  rm -f "$dir.log"
  # Smaller image, no host leftovers (docker provides resolv.conf, hosts and hostname).
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/tmp/* \
    "$dir"/var/log/*.log
  : >"$dir/etc/resolv.conf"
  : >"$dir/etc/hostname"
  tar --numeric-owner -C "$dir" -c . |
    docker import \
      -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      -c 'ENV LANG=C.UTF-8' \
      -c 'CMD ["/bin/bash"]' \
      -c "LABEL org.autobuilder.recipe=$DEBIAN_RECIPE" \
      -c "LABEL org.autobuilder.source=debootstrap-minbase-bookworm" \
      -m "autobuilder host-setup: debootstrap --variant=minbase bookworm + gcc make libc6-dev ccache" \
      - "$DEBIAN_IMAGE" >/dev/null
  rm -rf --one-file-system "$dir"
}

step_images() {
  local did=() kept=()
  if [[ $(image_recipe "$BUSYBOX_IMAGE" || echo absent) == "$BUSYBOX_RECIPE" ]]; then
    kept+=("$BUSYBOX_IMAGE")
  else
    local t0; t0=$(now_us)
    make_busybox_image
    did+=("built $BUSYBOX_IMAGE in $(fmt_s $(($(now_us) - t0))) s")
  fi
  local debian_recipe
  debian_recipe=$(image_recipe "$DEBIAN_IMAGE" || echo absent)
  if [[ $debian_recipe == "$DEBIAN_RECIPE" ]]; then
    kept+=("$DEBIAN_IMAGE")
  else
    local t0; t0=$(now_us)
    DEBIAN_KEPT=0
    # an image of an older recipe stays when it cannot be remade: a host set up once still sets up offline
    make_debian_image "$([[ $debian_recipe == absent ]] || echo keep-old)"
    if ((DEBIAN_KEPT)); then
      detail "WARNING: could not remake $DEBIAN_IMAGE (recipe $debian_recipe, wanted $DEBIAN_RECIPE): the one present is kept"
      kept+=("$DEBIAN_IMAGE (recipe $debian_recipe: not remade)")
    else
      did+=("built $DEBIAN_IMAGE in $(fmt_s $(($(now_us) - t0))) s")
    fi
  fi
  local IFS=,
  if ((${#did[@]} == 0)); then
    STEP_RESULT="present: ${kept[*]}"
  else
    STEP_RESULT="${did[*]}${kept:+; present: ${kept[*]}}"
  fi
}

# ---------------------------------------------------------------- 5. builds network
# Builds run hostile code (pull requests from forks). They get their own bridge network,
# whose traffic iptables lets out to the world (package registries, via Docker's NAT) but not
# to the host itself (its API listening on 0.0.0.0, dockerd, …), to link-local addresses
# (cloud instance metadata at 169.254.169.254) or to private ranges and the host's own
# networks. A container reaching one of the host's addresses goes through INPUT, not FORWARD,
# so both chains are filtered. Every rule is checked (`-C`) before it is added.
BUILDS_NETWORK=autobuilder-builds
BUILDS_BRIDGE=ab-builds # the bridge interface, named so the rules can match it (-i)
BUILDS_NETWORK_RECIPE=1
FWD_CHAIN=AUTOBUILDER-BUILDS
IN_CHAIN=AUTOBUILDER-BUILDS-IN
RULES_ADDED=0

# ensure_rule CMD CHAIN POS RULE...: adds RULE (append for POS "A", else insert at POS) unless it is there.
ensure_rule() {
  local cmd=$1 chain=$2 pos=$3
  shift 3
  "$cmd" -w -C "$chain" "$@" 2>/dev/null && return 0
  if [[ $pos == A ]]; then "$cmd" -w -A "$chain" "$@"; else "$cmd" -w -I "$chain" "$pos" "$@"; fi
  RULES_ADDED=$((RULES_ADDED + 1))
}
ensure_chain() { "$1" -w -n -L "$2" >/dev/null 2>&1 || "$1" -w -N "$2"; }

step_network() {
  local did=()
  if ! docker network inspect "$BUILDS_NETWORK" >/dev/null 2>&1; then
    # no inter-container traffic: one build cannot reach another running at the same time
    docker network create --driver bridge \
      -o "com.docker.network.bridge.name=$BUILDS_BRIDGE" \
      -o com.docker.network.bridge.enable_icc=false \
      --label "org.autobuilder.recipe=$BUILDS_NETWORK_RECIPE" \
      "$BUILDS_NETWORK" >/dev/null
    did+=("created network $BUILDS_NETWORK")
  fi
  local iface subnet id
  iface=$(docker network inspect -f '{{index .Options "com.docker.network.bridge.name"}}' "$BUILDS_NETWORK")
  if [[ -z $iface ]]; then # made by hand without a bridge name: Docker's default one
    id=$(docker network inspect -f '{{.Id}}' "$BUILDS_NETWORK")
    iface=br-${id:0:12}
  fi
  subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "$BUILDS_NETWORK" | awk '{ print $1 }')
  [[ -n $subnet ]] || die "network $BUILDS_NETWORK has no IPv4 subnet"

  local blocked=() addr allow ns
  # the host's own addresses (INPUT handles them; listed in FORWARD too, for DNAT'd paths)
  while read -r addr; do blocked+=("$addr/32"); done < <(ip -4 -o addr show | awk '{ split($4, a, "/"); print a[1] }')
  # the networks the host is directly on, link-local, and the private ranges
  while read -r addr; do [[ $addr == */* ]] && blocked+=("$addr"); done < <(ip -4 route show scope link | awk '{ print $1 }')
  blocked+=(169.254.0.0/16 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10)

  ensure_chain iptables "$FWD_CHAIN"
  ensure_chain iptables "$IN_CHAIN"
  # exceptions first (inserted at the top, so a later run's new one still precedes the drops):
  # replies, the configured allow-list, and DNS to the host's resolvers (which may be private)
  local exceptions=()
  IFS=, read -r -a exceptions <<<"${AUTOBUILDER_BUILDS_ALLOW:-}"
  for allow in "${exceptions[@]}"; do
    [[ -n $allow ]] || continue
    ensure_rule iptables "$FWD_CHAIN" 1 -d "$allow" -j RETURN
    ensure_rule iptables "$IN_CHAIN" 1 -d "$allow" -j RETURN
  done
  while read -r ns; do
    [[ $ns =~ ^[0-9.]+$ && $ns != 127.* ]] || continue
    for proto in udp tcp; do
      ensure_rule iptables "$FWD_CHAIN" 1 -d "$ns/32" -p "$proto" --dport 53 -j RETURN
      ensure_rule iptables "$IN_CHAIN" 1 -d "$ns/32" -p "$proto" --dport 53 -j RETURN
    done
  done < <(awk '$1 == "nameserver" { print $2 }' /etc/resolv.conf 2>/dev/null)
  ensure_rule iptables "$FWD_CHAIN" 1 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
  ensure_rule iptables "$IN_CHAIN" 1 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
  # then the drops (rejected, so a build fails at once instead of hanging on a timeout)
  for addr in "${blocked[@]}"; do
    ensure_rule iptables "$FWD_CHAIN" A -d "$addr" -j REJECT --reject-with icmp-admin-prohibited
  done
  ensure_rule iptables "$IN_CHAIN" A -j REJECT --reject-with icmp-admin-prohibited
  # the jumps: DOCKER-USER is Docker's place for user rules, run before its own in FORWARD
  ensure_chain iptables DOCKER-USER
  ensure_rule iptables DOCKER-USER 1 -i "$iface" -j "$FWD_CHAIN"
  ensure_rule iptables INPUT 1 -i "$iface" -j "$IN_CHAIN"
  # the network is IPv4 only, but containers still get IPv6 link-local addresses: the host's
  # fe80:: address on the bridge would reach services listening on ::
  if ip6tables -w -n -L INPUT >/dev/null 2>&1; then
    ensure_rule ip6tables INPUT 1 -i "$iface" -j DROP
    ensure_rule ip6tables FORWARD 1 -i "$iface" -j DROP
  else
    detail "WARNING: ip6tables does not work here; IPv6 from $BUILDS_NETWORK is not filtered"
  fi
  did+=("$RULES_ADDED iptables rules added")
  local IFS=,
  STEP_RESULT="$BUILDS_NETWORK ($subnet on $iface): ${did[*]}; ${#blocked[@]} destinations rejected"
}

# ---------------------------------------------------------------- verification
step_verify() {
  if [[ ${AUTOBUILDER_SKIP_VERIFY:-} == 1 ]]; then
    STEP_RESULT="skipped (AUTOBUILDER_SKIP_VERIFY=1)"
    return
  fi
  local out checks=()
  # busybox image, no network
  out=$(docker run --rm --network none "$BUSYBOX_IMAGE" \
    sh -c 'test "$(stat -c %a /tmp)" = 1777 && id -un && ls /sys/class/net | tr "\n" " "')
  [[ $out == root*lo* && $out != *eth0* ]] || die "busybox check failed: $out"
  checks+=("busybox ok")
  checks+=("--network none ok (lo only)")
  # debian image: compile and run a C program, and compile through ccache (recipe 2 on)
  out=$(docker run --rm --network none "$DEBIAN_IMAGE" sh -c '
    printf "#include <stdio.h>\nint main(void) { puts(\"hello from gcc\"); return 0; }\n" >/tmp/h.c &&
    gcc -O2 -o /tmp/h /tmp/h.c && /tmp/h &&
    if command -v ccache >/dev/null; then CCACHE_DIR=/tmp/cc ccache gcc -c -o /tmp/h.o /tmp/h.c && echo "ccache ok"; fi')
  [[ $out == "hello from gcc"* ]] || die "debian-build check failed: $out"
  checks+=("gcc ok")
  if [[ $(image_recipe "$DEBIAN_IMAGE") == "$DEBIAN_RECIPE" ]]; then
    [[ $out == *"ccache ok" ]] || die "debian-build ccache check failed: $out"
    checks+=("ccache ok")
  fi
  # default bridge network: an address, a route, the gateway and (best effort) the mirror
  local gw mirror_host
  gw=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
  mirror_host=$(debian_mirror | sed -E 's#^[a-z]+://([^/:]+).*#\1#')
  out=$(docker run --rm "$BUSYBOX_IMAGE" sh -c "
    ip -4 -o addr show eth0 | awk '{print \$4}'
    for i in 1 2 3 4 5; do
      if ping -c 1 -W 1 $gw >/dev/null 2>&1; then echo gateway-ok-try-\$i; break; fi
    done
    nc -w 5 $mirror_host 80 </dev/null >/dev/null 2>&1 && echo mirror-ok
    true")
  [[ $out == *gateway-ok* || $out == *mirror-ok* ]] ||
    die "bridge networking check failed (container output: $out)"
  checks+=("bridge ok ($(head -n1 <<<"$out") via $gw$([[ $out == *gateway-ok-try-1* ]] || echo ", gateway ping: $(grep -o 'gateway-ok-try-[0-9]' <<<"$out" || echo failed)"))")
  if [[ $out == *mirror-ok* ]]; then
    checks+=("container reaches $mirror_host:80")
  else
    detail "WARNING: a bridge container could not reach $mirror_host:80 (outbound NAT?)"
    checks+=("container CANNOT reach $mirror_host:80")
  fi
  # builds network: the host (its gateway address) refused, the mirror (best effort) reached
  local bgw
  bgw=$(docker network inspect "$BUILDS_NETWORK" --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')
  out=$(docker run --rm --network "$BUILDS_NETWORK" "$BUSYBOX_IMAGE" sh -c "
    nc -w 3 $bgw 22 </dev/null >/dev/null 2>&1 && echo host-reached
    (printf 'HEAD / HTTP/1.0\r\n\r\n'; sleep 2) | nc -w 5 $mirror_host 80 2>/dev/null | grep -q HTTP && echo mirror-ok
    true")
  [[ $out != *host-reached* ]] || die "a container on $BUILDS_NETWORK reached the host at $bgw"
  checks+=("$BUILDS_NETWORK: host $bgw refused$([[ $out == *mirror-ok* ]] && echo ", $mirror_host:80 reached" || echo ", $mirror_host:80 NOT reached")")
  # bind mount of a directory on the Btrfs data dir + subvolume create/snapshot/delete
  local t
  t=$(mktemp -d "$DATA_DIR/.host-setup-check.XXXXXX")
  btrfs subvolume create "$t/sv" >/dev/null
  docker run --rm --network none -v "$t/sv:/work" "$BUSYBOX_IMAGE" sh -c 'echo written-in-container >/work/f'
  btrfs subvolume snapshot "$t/sv" "$t/snap" >/dev/null
  [[ $(cat "$t/snap/f") == written-in-container ]] || die "btrfs bind-mount/snapshot check failed"
  btrfs subvolume delete "$t/snap" "$t/sv" >/dev/null
  rmdir "$t"
  checks+=("bind mount + btrfs subvolume/snapshot ok")
  local IFS=,
  STEP_RESULT="${checks[*]}"
}

# ---------------------------------------------------------------- main
log "repo root $REPO_ROOT, data dir $DATA_DIR"
run_step apt step_apt
run_step docker step_docker
run_step btrfs step_btrfs
run_step images step_images
run_step network step_network
run_step verify step_verify

T_TOTAL=$(($(now_us) - T_START))
log "summary"
for line in "${SUMMARY[@]}"; do detail "$line"; done
detail "docker:   client $(docker version --format '{{.Client.Version}}' 2>/dev/null) ($(command -v docker)), server $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'), $(docker info --format 'storage {{.Driver}}, cgroup v{{.CgroupVersion}} {{.CgroupDriver}}')"
detail "data dir: $DATA_DIR ($(stat -f -c %T "$DATA_DIR") on $(findmnt -n -o SOURCE --target "$DATA_DIR" | head -n1)$( [[ -e $BTRFS_IMAGE ]] && echo ", image $BTRFS_IMAGE"))"
detail "redis:    $(redis-server --version | awk '{ print $3 }' | sed 's/^v=//') ($(command -v redis-server)), system service on 6379: $(timeout 3 redis-cli -p 6379 ping 2>/dev/null | grep -qx PONG && echo answering || echo "not answering (not needed)")"
detail "openssl:  $(openssl version | awk '{ print $2 }') ($(command -v openssl))"
for img in "$BUSYBOX_IMAGE" "$DEBIAN_IMAGE"; do
  detail "image:    $img $(docker image inspect --format '{{.Id}} {{.Size}}' "$img" | awk '{ printf "%s (%.0f MB)", $1, $2 / 1e6 }')"
done
log "done in $(fmt_s "$T_TOTAL") s"
