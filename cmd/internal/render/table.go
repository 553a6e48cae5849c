package render

import (
	"bytes"
	"io"
	"slices"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// writeTable is the one place that uses tablewriter. Every option the
// output depends on is set here, so a library default changing does not
// change our tables: no borders, a dashed line under the header, headers
// as written (no upper-casing), no wrapping, no trimming, two spaces
// between columns.
func writeTable(w io.Writer, t Table) error {
	align := make([]tw.Align, 0, len(t.Rows[0]))
	for i := range t.Rows[0] {
		if slices.Contains(t.Right, i) {
			align = append(align, tw.AlignRight)
		} else {
			align = append(align, tw.AlignLeft)
		}
	}
	cell := func(a []tw.Align) tw.CellConfig {
		return tw.CellConfig{
			Formatting: tw.CellFormatting{AutoWrap: tw.WrapNone, AutoFormat: tw.Off, MergeMode: tw.MergeNone},
			Merging:    tw.CellMerging{Mode: tw.MergeNone},
			Padding:    tw.CellPadding{Global: tw.Padding{Left: "", Right: "  ", Overwrite: true}},
			Alignment:  tw.CellAlignment{Global: tw.AlignLeft, PerColumn: a},
		}
	}
	cfg := tablewriter.Config{
		MaxWidth: 0,
		Header:   cell(align),
		Row:      cell(align),
		Footer:   cell(align),
		Behavior: tw.Behavior{
			AutoHide:  tw.Off,
			TrimSpace: tw.Off,
			TrimTab:   tw.Off,
			TrimLine:  tw.Off,
			Structs:   tw.Struct{AutoHeader: tw.Off},
		},
	}
	r := renderer.NewBlueprint(tw.Rendition{
		Borders: tw.BorderNone,
		Symbols: tw.NewSymbols(tw.StyleASCII),
		Settings: tw.Settings{
			Separators: tw.Separators{ShowHeader: tw.On, ShowFooter: tw.Off, BetweenRows: tw.Off, BetweenColumns: tw.Off},
			Lines:      tw.Lines{ShowTop: tw.Off, ShowBottom: tw.Off, ShowHeaderLine: tw.On, ShowFooterLine: tw.Off},
		},
	})
	var buf bytes.Buffer
	tbl := tablewriter.NewTable(&buf,
		tablewriter.WithConfig(cfg),
		tablewriter.WithRenderer(r),
		tablewriter.WithEastAsian(tw.Off),
		tablewriter.WithDebug(false),
	)
	if t.Header != nil {
		h := make([]any, len(t.Header))
		for i, s := range t.Header {
			h[i] = s
		}
		tbl.Header(h...)
	}
	for _, row := range t.Rows {
		if err := tbl.Append(row); err != nil {
			return err
		}
	}
	if err := tbl.Render(); err != nil {
		return err
	}
	// The padding after the last column is trailing space: drop it.
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(buf.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		out.Write(bytes.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	_, err := w.Write(out.Bytes())
	return err
}
