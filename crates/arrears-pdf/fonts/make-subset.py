import sys
from fontTools import subset
from fontTools.ttLib import TTFont
src, dst, style = sys.argv[1:4]
opts = subset.Options()
opts.name_IDs = ['*']
opts.name_legacy = True
opts.name_languages = ['*']
opts.layout_features = ['kern', 'liga']
opts.hinting = False
opts.notdef_outline = True
f = TTFont(src)
unicodes = list(range(0x20, 0x7F)) + list(range(0xA0, 0x180)) + [0x20AC, 0x2013, 0x2014, 0x2018, 0x2019, 0x201A, 0x201C, 0x201D, 0x201E, 0x2022, 0x2026, 0x2039, 0x203A, 0x2116]
s = subset.Subsetter(opts)
s.populate(unicodes=unicodes)
s.subset(f)
family = 'Arrears Letter Sans'
full = family + ('' if style == 'Regular' else ' ' + style)
ps = 'ArrearsLetterSans-' + style
for rec in f['name'].names:
    if rec.nameID in (1, 16):
        rec.string = family
    elif rec.nameID == 3:
        rec.string = '1.0;' + ps
    elif rec.nameID == 4:
        rec.string = full
    elif rec.nameID == 6:
        rec.string = ps
    elif rec.nameID == 5:
        rec.string = 'Version 1.0; subset of Liberation Sans 2.1.5'
f.save(dst)
