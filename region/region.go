// Package region is South Korea's 252 si/gun/gu (시군구), the regions a
// citizen registers in: their MOIS codes, names, centres and 2021
// populations, from the embedded regions.csv (README.md gives its sources,
// derivation and known gaps). Intake validates region codes against it,
// the simulator places people and clinics with it.
package region

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
)

//go:embed regions.csv
var regionsCSV string

// Region is one si/gun/gu.
type Region struct {
	Code       string // 5-digit MOIS code, e.g. 11680
	Sido       string // province
	Name       string
	Lat, Lng   float64 // centre (WGS84)
	Population int     // registered residents, end of 2021
	// HasCentre is false for the few regions whose boundary is missing
	// from the source (their Lat/Lng are borrowed from the parent city).
	HasCentre bool
}

var (
	parseOnce sync.Once
	all       []Region
	byCode    map[string]int
	parseErr  error
)

func load() {
	parseOnce.Do(func() {
		all, parseErr = parse(regionsCSV)
		byCode = make(map[string]int, len(all))
		for i, r := range all {
			byCode[r.Code] = i
		}
	})
	if parseErr != nil {
		panic("region: embedded regions.csv: " + parseErr.Error())
	}
}

// All returns the 252 regions, sorted by code; callers must not modify
// it. Regions without a 2021 population (re-created gu, Jeju's two
// cities) get a share of their parent's, and regions without a centre
// borrow their parent's, so that every region can hold people and
// clinics; the file keeps those fields empty and README.md says which.
func All() []Region {
	load()
	return all
}

// ByCode returns the region with the code.
func ByCode(code string) (Region, bool) {
	load()
	i, ok := byCode[code]
	if !ok {
		return Region{}, false
	}
	return all[i], true
}

// Known reports whether code is one of the regions' codes.
func Known(code string) bool {
	load()
	_, ok := byCode[code]
	return ok
}

const header = "code,sido,name,lat,lng,pop_total_2021"

func parse(data string) ([]Region, error) {
	recs, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("parse regions: %w", err)
	}
	if len(recs) < 2 || strings.Join(recs[0], ",") != header {
		return nil, fmt.Errorf("parse regions: want the header %q", header)
	}
	out := make([]Region, 0, len(recs)-1)
	for i, r := range recs[1:] {
		reg := Region{Code: r[0], Sido: r[1], Name: r[2]}
		if r[3] != "" && r[4] != "" {
			if reg.Lat, err = strconv.ParseFloat(r[3], 64); err != nil {
				return nil, fmt.Errorf("parse regions: row %d lat: %w", i+2, err)
			}
			if reg.Lng, err = strconv.ParseFloat(r[4], 64); err != nil {
				return nil, fmt.Errorf("parse regions: row %d lng: %w", i+2, err)
			}
			reg.HasCentre = true
		}
		if r[5] != "" {
			if reg.Population, err = strconv.Atoi(r[5]); err != nil {
				return nil, fmt.Errorf("parse regions: row %d population: %w", i+2, err)
			}
		}
		out = append(out, reg)
	}
	fillGaps(out)
	return out, nil
}

// fillGaps fills the known gaps of the source (README.md): Bucheon's three
// gu share the city's 806,067 people and centre; Jeju's two cities share
// the province's 676,759 (Jeju-si holds about 73 % of them).
func fillGaps(rs []Region) {
	const bucheonCentreLat, bucheonCentreLng = 37.50349, 126.78306
	share := map[string]int{"41192": 806067 * 40 / 100, "41194": 806067 * 30 / 100, "41196": 806067 * 30 / 100,
		"50110": 676759 * 73 / 100, "50130": 676759 * 27 / 100}
	for i := range rs {
		if rs[i].Population == 0 {
			rs[i].Population = share[rs[i].Code]
		}
		if !rs[i].HasCentre && strings.HasPrefix(rs[i].Code, "4119") {
			rs[i].Lat, rs[i].Lng = bucheonCentreLat, bucheonCentreLng
		}
	}
}

// DistanceKm is the great-circle distance between two points on the Earth
// (haversine, mean radius 6371 km).
func DistanceKm(lat1, lng1, lat2, lng2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dlat, dlng := (lat2-lat1)*rad, (lng2-lng1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlng/2)*math.Sin(dlng/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}
