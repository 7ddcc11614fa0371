# Sourced by the install scripts: installs Debian packages that dpkg does not have yet, calling
# apt-get (update, then install, no recommends) only when some are missing, as root or through
# sudo. Usage: apt_install_missing TAG PKG...  (TAG prefixes the messages; exits 1 when packages
# are missing and neither root nor sudo is there).

# The packages among "$@" that dpkg does not report installed, one a line.
apt_missing() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = "install ok installed" ] || echo "$pkg"
    done
}

apt_install_missing() {
    local tag=$1
    shift
    local missing
    mapfile -t missing < <(apt_missing "$@")
    if [ ${#missing[@]} -eq 0 ]; then
        echo "$tag: all $# packages already installed"
        return 0
    fi
    # sudo drops the environment, so DEBIAN_FRONTEND goes through env on both paths.
    local as_root
    if [ "$(id -u)" -eq 0 ]; then
        as_root=(env)
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo env)
    else
        echo "$tag: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
    "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    echo "$tag: installed ${missing[*]}"
}
