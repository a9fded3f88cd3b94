package overload

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupCores returns how many cores the cgroup of the process may use, as
// its CPU quota over its period, read under root ("/" in production): from
// cgroup v2's cpu.max, else cgroup v1's cpu.cfs_quota_us and
// cpu.cfs_period_us. ok is false when there is no quota.
func cgroupCores(root string) (cores float64, ok bool, err error) {
	f, err := os.Open(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil // not Linux, or no cgroups
		}
		return 0, false, err
	}
	defer f.Close()
	var v2, v1 string
	v1Found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "cpu" {
				v1, v1Found = parts[2], true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, false, err
	}
	if v1Found {
		if cores, ok, err := v1Quota(root, v1); err != nil || ok {
			return cores, ok, err
		}
	}
	return v2Quota(root, v2)
}

// v2Quota reads cpu.max ("max 100000" or "200000 100000") of the cgroup at
// path, or of the first ancestor that has one with a quota.
func v2Quota(root, path string) (float64, bool, error) {
	for dir := filepath.Join(root, "sys/fs/cgroup", path); ; dir = filepath.Dir(dir) {
		b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
		if err == nil {
			f := strings.Fields(string(b))
			if len(f) == 2 && f[0] != "max" {
				return ratio(f[0], f[1], "cpu.max")
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return 0, false, err
		}
		if dir == filepath.Join(root, "sys/fs/cgroup") || dir == filepath.Dir(dir) {
			return 0, false, nil
		}
	}
}

// v1Quota reads cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us of the
// cpu controller's cgroup at path; mounted as cpu or cpu,cpuacct.
func v1Quota(root, path string) (float64, bool, error) {
	for _, mount := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
		dir := filepath.Join(root, "sys/fs/cgroup", mount, path)
		q, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return 0, false, err
		}
		p, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
		if err != nil {
			return 0, false, err
		}
		quota := strings.TrimSpace(string(q))
		if quota == "-1" {
			return 0, false, nil
		}
		return ratio(quota, strings.TrimSpace(string(p)), "cpu.cfs_quota_us")
	}
	return 0, false, nil
}

func ratio(quota, period, file string) (float64, bool, error) {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false, fmt.Errorf("overload: %s: quota %q, period %q: not positive numbers", file, quota, period)
	}
	return q / p, true, nil
}
