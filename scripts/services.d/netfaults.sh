# Sourced by scripts/services.sh: the tools of the reliability suite's network-fault scenario
# (reliability/tests/reliability/network_faults.rs), which puts a private server in a network
# namespace of its own and faults on the veth pair that joins it to the host:
#   ip          (iproute2)  namespaces, veth pairs, routes
#   iptables    (iptables)  packet loss, the partition, and the NFQUEUE that delays packets
#   python3                 the delayer (nfqueue_delay.py: the kernel here has no netem qdisc)
# Installed from Debian's packages when missing (apt-get, as root; `apt-get update` only if the
# first try fails). Starts nothing. Without root the scenario cannot run at all, and fails
# under STENT_REQUIRE_BACKENDS=1 by itself.

install_netfault_tools() {
  local missing=()
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  [ "${#missing[@]}" = 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "network-fault tools missing (${missing[*]}) and not root: not installed" >&2
    return 0
  fi
  echo "installing ${missing[*]} (network-fault scenario)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
    >/dev/null 2>&1 ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
    echo "installing ${missing[*]} failed: the network-fault scenario will fail" >&2
}

install_netfault_tools
