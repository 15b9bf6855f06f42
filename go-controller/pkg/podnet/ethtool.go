package podnet

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtool commands (linux/ethtool.h).
const (
	ethtoolGTXCSUM = 0x00000016
	ethtoolSTXCSUM = 0x00000017
)

type ethtoolValue struct {
	cmd  uint32
	data uint32
}

type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte
}

// SetTxChecksum turns transmit checksum offload of an interface in the current namespace on or off (what
// `ethtool -K IF tx on|off` does).
func SetTxChecksum(ifName string, on bool) error {
	v := ethtoolValue{cmd: ethtoolSTXCSUM}
	if on {
		v.data = 1
	}
	return ethtoolIoctl(ifName, &v)
}

// TxChecksum reports whether transmit checksum offload is on.
func TxChecksum(ifName string) (bool, error) {
	v := ethtoolValue{cmd: ethtoolGTXCSUM}
	err := ethtoolIoctl(ifName, &v)
	return v.data != 0, err
}

func ethtoolIoctl(ifName string, v *ethtoolValue) error {
	if len(ifName) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifName)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	var req ifreqData
	copy(req.name[:], ifName)
	req.data = uintptr(unsafe.Pointer(v))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return fmt.Errorf("ethtool ioctl on %s: %w", ifName, errno)
	}
	return nil
}
