package sim

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
)

// regionsCSV is South Korea's 252 si/gun/gu with codes, centres and 2021
// populations; data/README.md gives the sources and the known gaps.
//
//go:embed data/regions.csv
var regionsCSV string

// Region is one si/gun/gu.
type Region struct {
	Code       string // 5-digit MOIS code, e.g. 11680
	Sido       string
	Name       string
	Lat, Lng   float64
	Population int
	// HasCentre is false for the few regions whose boundary is missing
	// from the source (their Lat/Lng are borrowed from the parent city).
	HasCentre bool
}

var (
	regionsOnce sync.Once
	regions     []Region
	regionsErr  error
)

// Regions returns the 252 regions, sorted by code. Regions without a 2021
// population (re-created gu, Jeju's two cities) get a share of their
// parent's, and regions without a centre borrow their parent's, so that
// every region can hold people and clinics; the source keeps those fields
// empty and data/README.md says which.
func Regions() []Region {
	regionsOnce.Do(func() { regions, regionsErr = parseRegions(regionsCSV) })
	if regionsErr != nil {
		panic("sim: embedded regions.csv: " + regionsErr.Error())
	}
	return regions
}

// RegionByCode returns a region.
func RegionByCode(code string) (Region, bool) {
	for _, r := range Regions() {
		if r.Code == code {
			return r, true
		}
	}
	return Region{}, false
}

func parseRegions(data string) ([]Region, error) {
	recs, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) < 2 || strings.Join(recs[0], ",") != "code,sido,name,lat,lng,pop_total_2021" {
		return nil, fmt.Errorf("unexpected header %v", recs[0])
	}
	out := make([]Region, 0, len(recs)-1)
	for _, r := range recs[1:] {
		reg := Region{Code: r[0], Sido: r[1], Name: r[2]}
		if r[3] != "" && r[4] != "" {
			reg.Lat, _ = strconv.ParseFloat(r[3], 64)
			reg.Lng, _ = strconv.ParseFloat(r[4], 64)
			reg.HasCentre = true
		}
		if r[5] != "" {
			reg.Population, _ = strconv.Atoi(r[5])
		}
		out = append(out, reg)
	}
	fillGaps(out)
	return out, nil
}

// Known gaps of the source (data/README.md): Bucheon's three gu share the
// city's 806,067 people and centre; Jeju's two cities share the province's
// 676,759 (Jeju-si holds about 73 % of them).
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

// DistanceKm is the great-circle distance between two points.
func DistanceKm(lat1, lng1, lat2, lng2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dlat, dlng := (lat2-lat1)*rad, (lng2-lng1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlng/2)*math.Sin(dlng/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}
