//! A route guide client that runs each of the four RPCs once, printing what it gets.

use std::io::Write;

use tokio_stream::iter;
use volley::Channel;

use crate::routeguide::{Point, Rectangle, RouteGuideClient, RouteNote};

fn point(latitude: i32, longitude: i32) -> Point {
    Point {
        latitude,
        longitude,
    }
}

/// Runs GetFeature, ListFeatures, RecordRoute and RouteChat against `channel`.
pub async fn run(channel: Channel, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    let client = RouteGuideClient::new(channel);

    let feature = client
        .get_feature(point(409146138, -746188906))
        .await?
        .into_inner();
    writeln!(out, "GetFeature -> {:?}", feature.name)?;
    let feature = client
        .get_feature(point(407838351, -746143763))
        .await?
        .into_inner();
    writeln!(out, "GetFeature -> {:?}", feature.name)?;

    let rect = Rectangle {
        lo: Some(point(400000000, -750000000)),
        hi: Some(point(420000000, -730000000)),
    };
    let mut features = client.list_features(rect).await?.into_inner();
    let mut n = 0;
    while let Some(f) = features.message().await? {
        n += 1;
        writeln!(out, "ListFeatures -> {:?}", f.name)?;
    }
    writeln!(out, "ListFeatures returned {n} features")?;

    let route = vec![
        point(407838351, -746143763),
        point(408122808, -743999179),
        point(413628156, -749015468),
    ];
    let summary = client.record_route(iter(route)).await?.into_inner();
    writeln!(
        out,
        "RecordRoute -> {} points, {} features, {} m",
        summary.point_count, summary.feature_count, summary.distance
    )?;

    let notes: Vec<RouteNote> = ["first", "second", "third", "fourth"]
        .iter()
        .enumerate()
        .map(|(i, m)| RouteNote {
            location: Some(point(0, (i % 2) as i32)),
            message: (*m).to_owned(),
        })
        .collect();
    let mut replies = client.route_chat(iter(notes)).await?.into_inner();
    while let Some(note) = replies.message().await? {
        writeln!(
            out,
            "RouteChat -> got {:?} at {:?}",
            note.message, note.location
        )?;
    }
    Ok(())
}
