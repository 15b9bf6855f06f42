package nodeagent

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ConfList returns the CNI network configuration list kovn installs.
func ConfList(socket string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.1.0",
		"name":       "kovn",
		"plugins": []map[string]any{{
			"type":         "kovn-cni",
			"serverSocket": socket,
		}},
	}, "", "  ")
}

// installCNI writes the conflist and copies the plugin binary, each atomically (write aside, then rename), so a
// runtime never reads half a file.
func installCNI(cfg Config) error {
	if cfg.CNIConfFile != "" {
		data, err := ConfList(cfg.CNISocket)
		if err != nil {
			return err
		}
		if err := writeAtomic(cfg.CNIConfFile, 0o644, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return fmt.Errorf("install CNI config: %w", err)
		}
	}
	if cfg.CNIBinDir != "" {
		src, err := os.Open(cfg.CNIPluginPath)
		if err != nil {
			return fmt.Errorf("install CNI plugin: %w", err)
		}
		defer src.Close()
		dst := filepath.Join(cfg.CNIBinDir, "kovn-cni")
		if err := writeAtomic(dst, 0o755, func(w io.Writer) error { _, err := io.Copy(w, src); return err }); err != nil {
			return fmt.Errorf("install CNI plugin: %w", err)
		}
	}
	return nil
}

func writeAtomic(path string, mode os.FileMode, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
