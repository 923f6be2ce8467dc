//! The route guide service: a few known features, and the four kinds of RPC over them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use volley::{Request, Response, Status, Streaming};

use crate::routeguide::{Feature, Point, Rectangle, RouteGuide, RouteNote, RouteSummary};

/// A few features of the upstream example's database.
pub fn features() -> Vec<Feature> {
    [
        (
            "Patriots Path, Mendham, NJ 07945, USA",
            407838351,
            -746143763,
        ),
        (
            "101 New Jersey 10, Whippany, NJ 07981, USA",
            408122808,
            -743999179,
        ),
        ("U.S. 6, Shohola, PA 18458, USA", 413628156, -749015468),
        (
            "5 Conners Road, Kingston, NY 12401, USA",
            419999544,
            -740371136,
        ),
        (
            "Mid Hudson Psychiatric Center, New Hampton, NY 10958, USA",
            414008389,
            -743951297,
        ),
        ("", 416851321, -742674555),
    ]
    .into_iter()
    .map(|(name, latitude, longitude)| Feature {
        name: name.to_owned(),
        location: Some(Point {
            latitude,
            longitude,
        }),
    })
    .collect()
}

/// The notes received so far, by (latitude, longitude).
type NotesByLocation = HashMap<(i32, i32), Vec<RouteNote>>;

/// The route guide over a fixed set of features.
#[derive(Debug)]
pub struct RouteGuideService {
    features: Vec<Feature>,
    notes: Arc<Mutex<NotesByLocation>>,
}

impl Default for RouteGuideService {
    fn default() -> Self {
        RouteGuideService {
            features: features(),
            notes: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

fn in_range(p: &Point, r: &Rectangle) -> bool {
    let (lo, hi) = (r.lo.unwrap_or_default(), r.hi.unwrap_or_default());
    let (left, right) = (
        lo.longitude.min(hi.longitude),
        lo.longitude.max(hi.longitude),
    );
    let (bottom, top) = (lo.latitude.min(hi.latitude), lo.latitude.max(hi.latitude));
    (left..=right).contains(&p.longitude) && (bottom..=top).contains(&p.latitude)
}

/// The great-circle distance in metres between two E7 points (haversine).
pub fn distance(a: &Point, b: &Point) -> i32 {
    const R: f64 = 6_371_000.0;
    let rad = |e7: i32| (f64::from(e7) / 1e7).to_radians();
    let (lat1, lat2) = (rad(a.latitude), rad(b.latitude));
    let dlat = lat2 - lat1;
    let dlon = rad(b.longitude) - rad(a.longitude);
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    (2.0 * R * h.sqrt().atan2((1.0 - h).sqrt())) as i32
}

impl RouteGuide for RouteGuideService {
    async fn get_feature(&self, request: Request<Point>) -> Result<Response<Feature>, Status> {
        let point = *request.get_ref();
        let found = self.features.iter().find(|f| f.location == Some(point));
        Ok(Response::new(found.cloned().unwrap_or(Feature {
            name: String::new(),
            location: Some(point),
        })))
    }

    type ListFeaturesStream = ReceiverStream<Result<Feature, Status>>;

    async fn list_features(
        &self,
        request: Request<Rectangle>,
    ) -> Result<Response<Self::ListFeaturesStream>, Status> {
        let rect = *request.get_ref();
        let matching: Vec<Feature> = self
            .features
            .iter()
            .filter(|f| f.location.is_some_and(|p| in_range(&p, &rect)))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for f in matching {
                if tx.send(Ok(f)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn record_route(
        &self,
        request: Request<Streaming<Point>>,
    ) -> Result<Response<RouteSummary>, Status> {
        let mut points = request.into_inner();
        let start = Instant::now();
        let mut summary = RouteSummary::default();
        let mut last: Option<Point> = None;
        while let Some(point) = points.message().await? {
            summary.point_count += 1;
            if self
                .features
                .iter()
                .any(|f| f.location == Some(point) && !f.name.is_empty())
            {
                summary.feature_count += 1;
            }
            if let Some(prev) = last {
                summary.distance += distance(&prev, &point);
            }
            last = Some(point);
        }
        summary.elapsed_time = start.elapsed().as_secs() as i32;
        Ok(Response::new(summary))
    }

    type RouteChatStream = ReceiverStream<Result<RouteNote, Status>>;

    async fn route_chat(
        &self,
        request: Request<Streaming<RouteNote>>,
    ) -> Result<Response<Self::RouteChatStream>, Status> {
        let mut incoming = request.into_inner();
        let notes = self.notes.clone();
        let (tx, rx) = mpsc::channel(16);
        // Each note is answered as it arrives with the notes sent earlier at its location.
        tokio::spawn(async move {
            loop {
                let note = match incoming.message().await {
                    Ok(Some(note)) => note,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let key = note
                    .location
                    .map(|p| (p.latitude, p.longitude))
                    .unwrap_or_default();
                let earlier = {
                    let mut notes = notes.lock().unwrap_or_else(|e| e.into_inner());
                    let at = notes.entry(key).or_default();
                    let earlier = at.clone();
                    at.push(note);
                    earlier
                };
                for reply in earlier {
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
