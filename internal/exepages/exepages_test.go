package exepages

import (
	"reflect"
	"testing"
)

const exe = "/usr/local/bin/zmesh-proxy"

// smaps is /proc/PID/smaps as a proxy's looks, trimmed to the lines that
// matter and a few that do not.
const smaps = `00400000-00d4f000 r-xp 00000000 fe:00 9986481                            /usr/local/bin/zmesh-proxy
Size:               9532 kB
Rss:                9148 kB
Pss:                4574 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
00d4f000-01846000 r--p 0094f000 fe:00 9986481                            /usr/local/bin/zmesh-proxy
Size:              11228 kB
Rss:                9308 kB
Anonymous:             0 kB
01846000-018e4000 rw-p 01446000 fe:00 9986481                            /usr/local/bin/zmesh-proxy
Rss:                 632 kB
Anonymous:           188 kB
018e4000-01900000 r--p 014e4000 fe:00 9986481                            /usr/local/bin/zmesh-proxy
Rss:                 112 kB
Anonymous:             4 kB
01900000-01a00000 r--p 01500000 fe:00 9986481                            /usr/local/bin/zmesh-proxy
Rss:                   0 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r--p 00000000 fe:00 1234                       /usr/lib/locale/C.utf8/LC_CTYPE
Rss:                  64 kB
Anonymous:             0 kB
c000000000-c004000000 rw-p 00000000 00:00 0 
Rss:                8000 kB
Anonymous:          8000 kB
7ffd1000-7ffd3000 r-xp 00000000 00:00 0                                  [vdso]
Rss:                   8 kB
Anonymous:             0 kB
`

func TestSelect(t *testing.T) {
	tests := []struct {
		name  string
		smaps string
		exe   string
		want  []Mapping
	}{
		{
			name:  "text and rodata, not data, not a copied page, not empty, not other files",
			smaps: smaps, exe: exe,
			want: []Mapping{
				{Start: 0x400000, End: 0xd4f000, Rss: 9148 << 10},
				{Start: 0xd4f000, End: 0x1846000, Rss: 9308 << 10},
			},
		},
		{name: "another executable", smaps: smaps, exe: "/usr/bin/other"},
		{
			name:  "a replaced executable keeps its (deleted) name, spaces and all",
			smaps: "00400000-00401000 r-xp 00000000 fe:00 1 /opt/my dir/zmesh (deleted)\nRss: 4 kB\nAnonymous: 0 kB\n",
			exe:   "/opt/my dir/zmesh (deleted)",
			want:  []Mapping{{Start: 0x400000, End: 0x401000, Rss: 4 << 10}},
		},
		{
			name:  "a shared mapping is not a private one",
			smaps: "00400000-00401000 r-xs 00000000 fe:00 1 " + exe + "\nRss: 4 kB\nAnonymous: 0 kB\n",
			exe:   exe,
		},
		{
			name:  "an unreadable Anonymous line is taken for a copy",
			smaps: "00400000-00401000 r-xp 00000000 fe:00 1 " + exe + "\nRss: 4 kB\nAnonymous: lots\n",
			exe:   exe,
		},
		{
			name:  "no Anonymous line at all: nothing says it holds no copy",
			smaps: "00400000-00401000 r-xp 00000000 fe:00 1 " + exe + "\nRss: 4 kB\n",
			exe:   exe,
		},
		{name: "malformed range", smaps: "00401000-00400000 r-xp 00000000 fe:00 1 " + exe + "\nRss: 4 kB\n", exe: exe},
		{name: "empty", smaps: "", exe: exe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Select([]byte(tt.smaps), tt.exe)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Select = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func FuzzSelect(f *testing.F) {
	f.Add([]byte(smaps), exe)
	f.Add([]byte("0-1 r-xp 0 0 0 x\nRss: 1 kB\nAnonymous: 0 kB"), "x")
	f.Fuzz(func(t *testing.T, b []byte, exe string) {
		for _, m := range Select(b, exe) {
			if m.End <= m.Start || m.Rss <= 0 {
				t.Fatalf("Select returned %+v", m)
			}
		}
	})
}
