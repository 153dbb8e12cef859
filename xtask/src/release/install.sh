#!/bin/sh
# Installer for edge @VERSION@: fetches the release files, checks every one against SHA256SUMS,
# and only then installs edge and edge-watchdog. Nothing downloaded is run before it is verified.
#
#   curl -fsSL @RELEASE_URL@/install.sh | sh
#   sh /path/to/release/install.sh   # run as a file next to the release files: no download
#
# Piped into sh, the script downloads: it never trusts the current directory, whatever it holds.
#
# Environment:
#   EDGE_RELEASE_URL  where the release files are (default @RELEASE_URL@); https:// only
#                     (file:// for a local mirror)
#   EDGE_LOCAL_DIR    install from the release files in this folder instead of downloading
#   EDGE_PREFIX       install prefix (default /usr/local): binaries go to $EDGE_PREFIX/bin
#   EDGE_SHARE_DIR    templates and systemd unit templates (default $EDGE_PREFIX/share/edge)
set -eu

version='@VERSION@'
release_url="${EDGE_RELEASE_URL:-@RELEASE_URL@}"
prefix="${EDGE_PREFIX:-/usr/local}"
share_dir="${EDGE_SHARE_DIR:-$prefix/share/edge}"

fail() {
    echo "edge installer: $*" >&2
    exit 1
}

case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) fail "no edge release for machine $(uname -m) (amd64 and arm64 only)" ;;
esac

if command -v sha256sum >/dev/null 2>&1; then
    verify() { sha256sum -c --strict --quiet -; }
elif command -v shasum >/dev/null 2>&1; then
    verify() { shasum -a 256 -c -; }
else
    fail "neither sha256sum nor shasum found: cannot verify the release"
fi

case "$release_url" in
    https://* | file://*) ;;
    *) fail "refusing release URL $release_url: only https:// (or file:// for a local mirror) keeps the download from being altered on the way" ;;
esac

fetch() { # URL FILE
    mkdir -p "$(dirname "$2")"
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --proto '=https,file' -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q --https-only -O "$2" "$1"
    else
        fail "neither curl nor wget found: cannot download $1"
    fi
}

# Local mode only for a script that is really a file named install.sh next to its SHA256SUMS,
# or a folder named by EDGE_LOCAL_DIR. Piped into sh, $0 is the shell's name and its dirname the
# current directory: that is never taken as the release.
local_dir="${EDGE_LOCAL_DIR:-}"
if [ -z "$local_dir" ]; then
    case "$0" in
        install.sh | */install.sh)
            if [ -f "$0" ] && [ ! -L "$0" ] && [ -f "$(dirname "$0")/SHA256SUMS" ]; then
                local_dir=$(dirname "$0")
            fi
            ;;
    esac
fi
if [ -n "$local_dir" ]; then
    [ -f "$local_dir/SHA256SUMS" ] || fail "$local_dir holds no SHA256SUMS: not an edge release folder"
    src=$(cd "$local_dir" && pwd)
    download=false
else
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    download=true
    fetch "$release_url/SHA256SUMS" "$src/SHA256SUMS" || fail "cannot download $release_url/SHA256SUMS"
fi

# Every file of the release except the binaries of other machines.
needed=$(grep -v -E -- "-${version}-(amd64|arm64)\$" "$src/SHA256SUMS" || true)
ours=$(grep -E -- "  \\*?(edge|edge-watchdog)-${version}-${arch}\$" "$src/SHA256SUMS" || true)
[ "$(printf '%s\n' "$ours" | grep -c .)" -eq 2 ] || fail "release $version has no $arch binaries"
needed=$(printf '%s\n%s\n' "$needed" "$ours" | grep .)

if [ "$download" = true ]; then
    printf '%s\n' "$needed" | sed -e 's/^[0-9a-f]* [ *]//' | while IFS= read -r file; do
        case "$file" in
            /* | *..*) fail "refusing odd path in SHA256SUMS: $file" ;;
        esac
        fetch "$release_url/$file" "$src/$file" || fail "cannot download $release_url/$file"
    done
fi

(cd "$src" && printf '%s\n' "$needed" | verify) || fail "checksum mismatch in $src: nothing was installed"

install_file() { # MODE SRC DEST: write beside DEST then rename, so a running binary is never torn
    mkdir -p "$(dirname "$3")"
    cp "$2" "$3.new.$$"
    chmod "$1" "$3.new.$$"
    mv -f "$3.new.$$" "$3"
}

install_file 0755 "$src/edge-$version-$arch" "$prefix/bin/edge"
install_file 0755 "$src/edge-watchdog-$version-$arch" "$prefix/bin/edge-watchdog"
printf '%s\n' "$needed" | sed -e 's/^[0-9a-f]* [ *]//' | grep -E '^(templates|systemd)/' | while IFS= read -r file; do
    install_file 0644 "$src/$file" "$share_dir/$file"
done

"$prefix/bin/edge" --version
echo "edge $version installed in $prefix/bin; templates in $share_dir"
echo "next: edge install --partner-id=ID --domain=DOMAIN (it renders and enables the systemd units)"
